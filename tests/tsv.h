/* Reading the TSV tables of the sweeps (experiments/table.h) in tests: whole files, their rows,
 * their keys, cuts after k rows. Every helper fails the running cmocka test on an error; the
 * strings returned are malloc'ed (the caller frees them). */
#ifndef RK_TEST_TSV_H
#define RK_TEST_TSV_H

#include <stddef.h>

char *tsv_slurp(const char *path, size_t *len);
void  tsv_spit(const char *path, const char *text, size_t len);
/* Only the lines that do not start with '#' (the header and the rows), or (prefix non-NULL)
 * only those starting with `prefix`. */
char *tsv_filter(const char *text, const char *prefix);
/* Every line but those starting with one of `prefixes` (NULL-terminated). */
char *tsv_without(const char *text, const char *const *prefixes);
/* The first `nkeys` fields of every data line (header included). */
char *tsv_keys(const char *text, int nkeys);
/* Offset just after the header line plus k data lines (comments skipped), or just after
 * `cut` more bytes of the next line. */
size_t tsv_offset_after_rows(const char *text, int k, size_t cut);
/* Data lines, the header not counted. */
int tsv_count_rows(const char *text);
/* The header and rows of two table files are the same bytes (comments aside). */
void tsv_assert_same_rows(const char *got_path, const char *want_path);

#endif
