/* Output files written all or nothing (lib/file.c): the one writer behind every file ropekit
 * writes (.npy arrays, FFTW wisdom, the experiments' tables, training checkpoints).
 *
 *   rk__out o;
 *   if (rk__out_open(&o, path)) ...o.step, o.err...      // "create"
 *   fwrite(..., o.f); ...
 *   if (rk__out_commit(&o)) ...o.step, o.err...          // "write", "fsync", "close", "rename"
 *   (or rk__out_abort(&o) to drop what was written)
 *
 * Where the data goes:
 *   - a regular file, or a name that does not exist yet: a temporary file in the same directory
 *     (mode: the replaced file's, else 0666 & ~umask), fsync'd, then renamed over the name, so
 *     a reader sees the old file or the whole new one, never a part; a failed or aborted write
 *     leaves the old file and no temporary behind.
 *   - a symbolic link: followed (to its final target, which may not exist yet); the target is
 *     replaced as above in the target's directory and the link stays a link.
 *   - a device, FIFO or socket (/dev/null, /dev/stdout, a pipe): written directly, never
 *     replaced (no fsync; an abort cannot take back what was written).
 *   - "-": standard output, directly.
 * Anything else (a directory) goes the rename way and fails there with EISDIR.
 * Not thread-safe on one rk__out; distinct rk__out are independent. */
#ifndef RK_FILE_H
#define RK_FILE_H

#include <stdio.h>
#include <sys/stat.h>

typedef struct {
    FILE       *f;        /* write the contents here                                     */
    char       *path;     /* the name given                                               */
    char       *target;   /* where the data lands (a link's target; == path otherwise)   */
    char       *tmp;      /* the temporary file (NULL when written directly)            */
    int         direct;   /* written in place: device, FIFO, socket or "-"             */
    int         err;      /* errno of the failed step (0 on success)                     */
    const char *step;     /* the failed step: "create", "write", "fsync", "close", "rename" */
} rk__out;

/* 0, or an errno value with o->step set ("create") and nothing left behind; o->direct tells
 * whether it was the target itself (a device or FIFO) or the temporary file that failed. */
int  rk__out_open(rk__out *o, const char *path);
/* Flush, fsync, close and rename into place: 0, or an errno value with o->step set; on failure
 * the temporary file is removed and the target is unchanged. Frees o's memory either way. */
int  rk__out_commit(rk__out *o);
/* Drop the temporary file (NULL-safe, idempotent); frees o's memory. */
void rk__out_abort(rk__out *o);
/* Write len bytes from data to path through the above: 0 or an errno value, *step set. */
int  rk__out_write_file(const char *path, const void *data, size_t len, const char **step);

/* Inputs: open path for reading if it is a regular file (O_NONBLOCK, so a FIFO with no
 * writer cannot hang the open; it is refused like a directory or device). RK_OK with *fd and
 * *st filled, or RK_EIO with the error recorded (naming path and why) and nothing open. */
int  rk__in_open(const char *path, int *fd, struct stat *st);

/* 1 if a and b name the same existing file (same device and inode, links followed), else 0. */
int  rk__same_file(const char *a, const char *b);

#endif
