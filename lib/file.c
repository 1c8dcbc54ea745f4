/* Output files written all or nothing: see rk_file.h. */
#include "rk_file.h"
#include "rk_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RK_MAX_LINKS 40   /* as the kernel's own limit on a path's symbolic links */

/* Memory comes from rk__alloc (the tests' failing-allocator hook reaches it); a failure sets
 * errno = ENOMEM. */
static void *take(size_t n)
{
    void *p = rk__alloc(n);
    if (!p) errno = ENOMEM;
    return p;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = take(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* The final target of path through any chain of symbolic links (relative links resolved
 * against the link's directory); the path itself when it is not a link or does not exist.
 * NULL with errno set (ELOOP for a cycle). */
static char *follow_links(const char *path)
{
    char *cur = dup_str(path);
    for (int hop = 0; cur; hop++) {
        struct stat st;
        if (lstat(cur, &st) != 0 || !S_ISLNK(st.st_mode)) return cur;
        if (hop == RK_MAX_LINKS) { rk__free(cur); errno = ELOOP; return NULL; }
        size_t cap = st.st_size > 0 ? (size_t)st.st_size + 1 : PATH_MAX;
        char *link = take(cap);
        if (!link) { rk__free(cur); return NULL; }
        ssize_t n = readlink(cur, link, cap - 1);
        if (n < 0) { int e = errno; rk__free(link); rk__free(cur); errno = e; return NULL; }
        link[n] = '\0';
        if (link[0] == '/') {
            rk__free(cur);
            cur = link;
            continue;
        }
        const char *slash = strrchr(cur, '/');
        size_t dl = slash ? (size_t)(slash - cur) + 1 : 0;
        char *next = take(dl + (size_t)n + 1);
        if (!next) { rk__free(link); rk__free(cur); return NULL; }
        memcpy(next, cur, dl);
        memcpy(next + dl, link, (size_t)n + 1);
        rk__free(link);
        rk__free(cur);
        cur = next;
    }
    return NULL;
}

/* The mode the file would have had: the replaced file's, else 0666 & ~umask. umask(2) can only
 * be read by setting it (racy in a threaded program), so Linux's /proc/self/status is read;
 * elsewhere the common 022 is assumed. */
static mode_t target_mode(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) return st.st_mode & 0777;
    mode_t mask = 022;
    FILE *f = fopen("/proc/self/status", "r");
    if (f) {
        char line[128];
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "Umask:", 6) == 0) {
                char *end;
                unsigned long v = strtoul(line + 6, &end, 8);
                if (end != line + 6) mask = (mode_t)(v & 0777);
                break;
            }
        fclose(f);
    }
    return 0666 & ~mask;
}

static void out_free(rk__out *o)
{
    if (o->target != o->path) rk__free(o->target);
    rk__free(o->path);
    rk__free(o->tmp);
    o->path = o->target = o->tmp = NULL;
}

static int out_fail(rk__out *o, const char *step, int e)
{
    o->step = step;
    o->err = e ? e : EIO;
    return o->err;
}

int rk__out_open(rk__out *o, const char *path)
{
    memset(o, 0, sizeof *o);
    if (strcmp(path, "-") == 0) {               /* standard output, in place */
        o->direct = 1;
        o->f = stdout;
        return 0;
    }
    if (!(o->path = dup_str(path))) return out_fail(o, "create", errno);
    if (!(o->target = follow_links(path))) {
        int e = errno;
        out_free(o);
        return out_fail(o, "create", e);
    }
    struct stat st;
    if (stat(o->target, &st) == 0 && (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ||
                                      S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))) {
        /* never replace a device or a pipe: write to it */
        o->direct = 1;
        int fd = open(o->target, O_WRONLY | O_NOCTTY | O_CLOEXEC);
        if (fd < 0 || !(o->f = fdopen(fd, "wb"))) {
            int e = errno;
            if (fd >= 0) close(fd);
            out_free(o);
            return out_fail(o, "create", e);
        }
        return 0;
    }
    size_t n = strlen(o->target);
    if (!(o->tmp = take(n + sizeof ".XXXXXX"))) {
        int e = errno;
        out_free(o);
        return out_fail(o, "create", e);
    }
    memcpy(o->tmp, o->target, n);
    memcpy(o->tmp + n, ".XXXXXX", sizeof ".XXXXXX");
    mode_t mode = target_mode(o->target);
    int fd = mkstemp(o->tmp);
    if (fd < 0) {
        int e = errno;
        out_free(o);
        return out_fail(o, "create", e);
    }
    (void)fchmod(fd, mode);         /* cosmetic: some file systems refuse, the data is fine */
    if (!(o->f = fdopen(fd, "wb"))) {
        int e = errno;
        close(fd);
        unlink(o->tmp);
        out_free(o);
        return out_fail(o, "create", e);
    }
    return 0;
}

int rk__out_commit(rk__out *o)
{
    const char *step = NULL;
    int e = 0;
    errno = 0;
    if (fflush(o->f) != 0 || ferror(o->f)) { step = "write"; e = errno; }
    if (!step && !o->direct && fsync(fileno(o->f)) != 0 && errno != EINVAL) {
        step = "fsync";
        e = errno;
    }
    if (o->f != stdout && fclose(o->f) != 0 && !step) { step = "close"; e = errno; }
    o->f = NULL;
    if (!step && o->tmp && rename(o->tmp, o->target) != 0) { step = "rename"; e = errno; }
    if (step && o->tmp) unlink(o->tmp);
    out_free(o);
    return step ? out_fail(o, step, e) : 0;
}

void rk__out_abort(rk__out *o)
{
    if (!o) return;
    if (o->f && o->f != stdout) fclose(o->f);
    o->f = NULL;
    if (o->tmp) unlink(o->tmp);
    out_free(o);
}

int rk__out_write_file(const char *path, const void *data, size_t len, const char **step)
{
    rk__out o;
    int e = rk__out_open(&o, path);
    if (!e) {
        if (len && fwrite(data, 1, len, o.f) != len) {
            e = errno ? errno : EIO;
            rk__out_abort(&o);
            *step = "write";
            return e;
        }
        e = rk__out_commit(&o);
    }
    *step = o.step;
    return e;
}

int rk__same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (!a || !b || stat(a, &sa) != 0 || stat(b, &sb) != 0) return 0;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int rk__in_open(const char *path, int *fd, struct stat *st)
{
    *fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (*fd < 0) RK_FAIL(RK_EIO, "%s: cannot open: %s", path, strerror(errno));
    const char *why = NULL;
    int e = 0;
    if (fstat(*fd, st) != 0) e = errno;
    else if (!S_ISREG(st->st_mode))
        why = S_ISDIR(st->st_mode) ? "is a directory" : S_ISFIFO(st->st_mode) ? "is a FIFO"
            : "is a device or socket";
    if (!e && !why) return RK_OK;
    close(*fd);
    *fd = -1;
    if (e) RK_FAIL(RK_EIO, "%s: cannot stat: %s", path, strerror(e));
    RK_FAIL(RK_EIO, "%s: %s, not a regular file", path, why);
}
