/* TSV tables for long runs: every finished row is on disk (written, flushed, fsync'ed) before
 * the next point starts, so an interrupted run (Ctrl-C, kill, crash) keeps all of them, and a
 * rerun with resume continues where it stopped.
 *
 * File layout:
 *   # <config>                      line 1: the settings that determine the rows
 *   # ...                           comments (machine header, notes)
 *   col1<TAB>col2<TAB>...           the header (column names)
 *   v1<TAB>v2<TAB>...               rows; the first nkey fields are the row's key
 *   # summary<TAB>...               summary lines (dropped and rewritten on resume)
 *
 * Resume: the file is read back; line 1 must equal "# " + config and the header must match,
 * otherwise it is an error (different settings: rows would not be comparable). Complete rows
 * are kept and their keys marked done; a torn last line (no newline, or too few fields: the
 * write of that row was cut off) is dropped; old summary lines are dropped. The kept content
 * is rewritten atomically (temporary file + rename) and then appended to. A missing file on
 * resume starts a fresh table.
 *
 *   table t;
 *   if (table_open(&t, path, config, header, 3, resume)) die(t.err);
 *   if (table_find(&t, key) < 0) { ...measure...; table_addf(&t, "%s\t%zu\t...", ...); }
 *   table_close(&t);
 */
#ifndef RK_TABLE_H
#define RK_TABLE_H

#include <stddef.h>
#include <stdio.h>

typedef struct {
    char  *line;      /* the row's text (fields separated by '\0' after splitting)          */
    char **field;     /* ncols pointers into line                                           */
} table_row;

typedef struct table table;
struct table {
    char      *path;
    FILE      *f;             /* open for appending                                          */
    size_t     ncols, nkey;
    char     **colname;       /* ncols names (split header)                                   */
    char      *header_buf;
    table_row *rows;          /* every row, kept and new, in file order                      */
    size_t     nrows, cap;
    size_t     kept;          /* rows read back on resume                                    */
    int        torn;          /* 1 if resume dropped a torn last line                        */
    int        dropped_summary; /* summary lines dropped on resume                            */
    char       err[512];
    /* Called after table_add appended row `row` (NULL: nothing): the sweeps echo rows on
     * stdout and stream them between MPI ranks (experiments/sweep.h). Set after table_open. */
    void     (*on_add)(void *arg, table *t, size_t row);
    void      *on_add_arg;
};

/* Create (or, with resume, reopen) the table. config: one line, no newline or tab needed
 * (the "# " is added); header: tab-separated column names; nkey >= 1 leading key columns.
 * path NULL: a table in memory only (nothing written; resume ignored).
 * Returns 0, or -1 with t->err set (the table is then closed). */
int table_open(table *t, const char *path, const char *config, const char *header,
               size_t nkey, int resume);
void table_close(table *t);   /* safe on a zeroed or closed table */

/* Append a row (exactly ncols tab-separated fields, no newline): written, flushed and
 * fsync'ed before returning. A row whose key is already present is an error. 0 or -1. */
int table_add(table *t, const char *line);
int table_addf(table *t, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* A comment line ("# " + text), flushed; summary lines use the prefix "summary\t". */
int table_comment(table *t, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Row index of the key (its nkey fields joined by tabs), or -1. */
long table_find(const table *t, const char *key);
/* Column index of a name, or -1. */
int table_col(const table *t, const char *name);
/* Field text of row r, column c (named); "" if out of range / unknown. */
const char *table_get(const table *t, size_t r, const char *col);
/* The field as a number (strtod; "nan" and unparsable text give NaN). */
double table_getd(const table *t, size_t r, const char *col);

/* Row r as its line (fields joined by tabs, no newline) into buf (cut to len - 1 bytes);
 * returns the line's full length, like snprintf. */
size_t table_row_text(const table *t, size_t r, char *buf, size_t len);

/* Low level, exposed for tests: split a header/row into fields in place. Returns the count. */
size_t table_split(char *line, char **field, size_t max);

#endif
