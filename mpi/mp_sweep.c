/* ropekit-mpi scaling | approx | train: the units of a sweep (experiments/sweep.h) spread over
 * the ranks, the tables written by rank 0 as the single-process command writes them.
 *
 * Every rank parses the same options and runs the driver's setup (a failure there ends the run
 * before a table is touched). Rank 0 opens the tables (--resume) and sends the rows they hold
 * to every rank, so each rank sees the tables the single-process run would; rank 0 then
 * assigns the unfinished units once, statically (largest remaining work first, each to the
 * least-loaded rank, by the driver's work estimate), and every rank runs its units in unit
 * order into in-memory copies of the tables. Each row a rank adds streams to rank 0, which
 * appends rows to the files in unit order (a unit's rows once every earlier unit's are there):
 * the files are the single-process tables row for row, and every row in them is complete and
 * final. Rows of later units wait in rank 0's memory until then (a killed job loses those;
 * --resume computes them again). A driver with arrival_order (train) has rank 0 write each row
 * as it arrives instead. A file a unit finishes that rank 0 must hold (sweep_progress.keep:
 * train's final checkpoints) goes to rank 0 as one message, in line with the unit's rows.
 *
 * Messages are point to point, so ranks with unequal work never wait on a collective mid-sweep.
 * A worker sends rank 0 ROW (unit, table, text), FILE (unit, path and bytes), DONE (unit) and
 * END (status), all with one tag, so they arrive in order; rank 0 sends a worker STOP (a rank
 * failed: stop after the current point) and, once every worker sent END, FINAL. Then every
 * rank joins mp_agree, which prints the first failing rank's message. A rank that fails inside
 * a unit (cli_die) gets there through mp_set_fail_notice: a worker sends END (failed) and waits
 * for FINAL; rank 0 sends STOP to the workers still running and takes their messages until
 * each has sent END. */
#include "mp.h"
#include "machine.h"
#include "sweep.h"

#include <errno.h>
#include <limits.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { TAG_UP = 41, TAG_DOWN = 42 };
enum { MSG_ROW = 1, MSG_FILE, MSG_DONE, MSG_END, MSG_STOP, MSG_FINAL };
enum { END_OK = 0, END_FAILED, END_STOPPED };
#define HDR 12   /* int32 type, int32 unit (or status), int32 table (ROW) or path length (FILE) */

/* Rows of one unit waiting on rank 0 for the units before it. */
typedef struct {
    char  **row;                       /* the table's index as a byte, then the row's text     */
    size_t  n, cap, written;
    int     done;
} unit_rows;

static struct {
    cli_ctx            *c;
    const sweep_driver *d;
    table               file[SWEEP_MAX_TABLES];    /* rank 0's tables on disk              */
    table               local[SWEEP_MAX_TABLES];   /* every rank's copies in memory         */
    char                pre[SWEEP_MAX_TABLES][32]; /* "--out: ": before a table's errors    */
    size_t              nu, cur;       /* units; the one this rank runs                        */
    int                *owner;         /* rank of each unit, -1: finished before this run      */
    /* rank 0 */
    unit_rows          *q;
    size_t              head;          /* the first unit not entirely in the file              */
    int                 nended, stopping;
    char               *ended;
    /* every rank: sends in flight (their buffers), STOP seen (workers), FINAL sent / seen */
    MPI_Request        *req;
    char              **buf;
    size_t              nreq, capreq;
    int                 stop, final;
} W;

/* ---- sending ----------------------------------------------------------------------------- */

static void reap(void)
{
    size_t k = 0;
    for (size_t i = 0; i < W.nreq; i++) {
        int flag = 0;
        MPI_Test(&W.req[i], &flag, MPI_STATUS_IGNORE);
        if (flag) {
            free(W.buf[i]);
        } else {
            W.req[k] = W.req[i];
            W.buf[k++] = W.buf[i];
        }
    }
    W.nreq = k;
}

/* A message that cannot go or come is one a rank may wait for forever: end the job. Only
 * when MPI itself fails, or malloc of a few bytes. */
_Noreturn static void fatal(const char *what, int rank)
{
    char other[32] = "another rank";
    if (rank >= 0) snprintf(other, sizeof other, "rank %d", rank);
    fprintf(stderr, "ropekit-mpi: [rank %d] cannot %s %s (MPI error or out of memory)\n",
            mp_rank, what, other);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, CLI_EXIT_ERROR);
    exit(CLI_EXIT_ERROR);
}

/* Queue (type, unit, aux, text) to `to`. Out of memory for a row or file: recorded for mp_agree
 * (the rank then stops); the other messages must arrive, so they go blocking (12 bytes: at
 * once). */
static void post(int to, int tag, int type, size_t unit, int aux, const char *text, size_t len)
{
    reap();
    int32_t h[3] = { type, (int32_t)unit, aux };
    if (W.nreq == W.capreq) {
        size_t cap = W.capreq ? 2 * W.capreq : 64;
        MPI_Request *r = realloc(W.req, cap * sizeof *r);
        if (r) W.req = r;
        char **b = realloc(W.buf, cap * sizeof *b);
        if (b) W.buf = b;
        if (r && b) W.capreq = cap;
    }
    char *m = W.nreq < W.capreq ? malloc(HDR + len) : NULL;
    if (!m) {
        if (len) { mp_fail("out of memory for a message to rank %d", to); return; }
        if (MPI_Send(h, HDR, MPI_BYTE, to, tag, MPI_COMM_WORLD) != MPI_SUCCESS)
            fatal("send to", to);
        return;
    }
    memcpy(m, h, HDR);
    if (len) memcpy(m + HDR, text, len);
    if (MPI_Isend(m, (int)(HDR + len), MPI_BYTE, to, tag, MPI_COMM_WORLD, &W.req[W.nreq]) !=
        MPI_SUCCESS)
        fatal("send to", to);
    W.buf[W.nreq++] = m;
}

static void wait_sends(void)
{
    if (W.nreq) MPI_Waitall((int)W.nreq, W.req, MPI_STATUSES_IGNORE);
    for (size_t i = 0; i < W.nreq; i++) free(W.buf[i]);
    W.nreq = 0;
}

/* A message from `from` (or MPI_ANY_SOURCE) with `tag`: wait for one (block), or take one
 * if it is there. Returns its bytes (malloc'ed, NUL-terminated; *len, *src), or NULL. */
static char *receive(int from, int tag, int block, int *len, int *src)
{
    MPI_Status st;
    int flag = 1, ok;
    if (block) ok = MPI_Probe(from, tag, MPI_COMM_WORLD, &st) == MPI_SUCCESS;
    else ok = MPI_Iprobe(from, tag, MPI_COMM_WORLD, &flag, &st) == MPI_SUCCESS;
    if (ok && !flag) return NULL;
    char *m = NULL;
    if (ok) {
        MPI_Get_count(&st, MPI_BYTE, len);
        m = *len >= HDR ? malloc((size_t)*len + 1) : NULL;
        ok = m && MPI_Recv(m, *len, MPI_BYTE, st.MPI_SOURCE, tag, MPI_COMM_WORLD,
                           MPI_STATUS_IGNORE) == MPI_SUCCESS;
    }
    if (!ok) fatal("receive from", from);
    m[*len] = '\0';
    *src = st.MPI_SOURCE;
    return m;
}

/* ---- rank 0: rows in unit order ------------------------------------------------------------ */

static void add_to_file(int k, const char *text)
{
    if (table_add(&W.file[k], text)) cli_die(W.c, "%s%s", W.pre[k], W.file[k].err);
}

/* A row of unit u for table k: written now (arrival_order), or queued for flush. */
static void push_row(size_t u, int k, const char *text)
{
    if (W.d->arrival_order) {
        add_to_file(k, text);
        return;
    }
    unit_rows *q = &W.q[u];
    if (q->n == q->cap) {
        size_t cap = q->cap ? 2 * q->cap : 16;
        char **r = realloc(q->row, cap * sizeof *r);
        if (!r) cli_die(W.c, "out of memory for the rows of unit %zu", u);
        q->row = r;
        q->cap = cap;
    }
    size_t len = strlen(text);
    if (!(q->row[q->n] = malloc(len + 2)))
        cli_die(W.c, "out of memory for the rows of unit %zu", u);
    q->row[q->n][0] = (char)k;
    memcpy(q->row[q->n++] + 1, text, len + 1);
}

/* Append to the files every row whose earlier units are all there. */
static void flush(void)
{
    while (W.head < W.nu) {
        unit_rows *q = &W.q[W.head];
        for (; q->written < q->n; q->written++) {
            add_to_file(q->row[q->written][0], q->row[q->written] + 1);
            free(q->row[q->written]);
            q->row[q->written] = NULL;
        }
        if (W.owner[W.head] >= 0 && !q->done) break;
        W.head++;
    }
}

/* A file a worker finished (FILE: path, then its bytes), at the same path on rank 0 unless the
 * file there already has these bytes (one machine, or a shared file system). */
static void keep_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "rb");
    if (f) {
        int same = 1;
        char buf[65536];
        size_t at = 0, n;
        while (same && (n = fread(buf, 1, sizeof buf, f)) > 0) {
            same = at + n <= len && memcmp(buf, data + at, n) == 0;
            at += n;
        }
        same = same && !ferror(f) && at == len;
        fclose(f);
        if (same) return;
    }
    const char *step = "write";
    int e = rk__out_write_file(path, data, len, &step);
    if (e) cli_die(W.c, "cannot %s %s (sent by the rank that made it): %s", step, path,
                   strerror(e));
}

static void stop_workers(void)
{
    if (W.stopping) return;
    W.stopping = 1;
    for (int p = 1; p < mp_size; p++)
        if (!W.ended[p]) post(p, TAG_DOWN, MSG_STOP, 0, 0, NULL, 0);
}

/* Take the workers' messages: all there are, or (block) until every worker has sent END. */
static void take(int block)
{
    for (;;) {
        if (block && W.nended == mp_size - 1) return;
        int len, src;
        char *m = receive(MPI_ANY_SOURCE, TAG_UP, block, &len, &src);
        if (!m) return;
        int32_t h[3];
        memcpy(h, m, HDR);
        size_t u = (size_t)h[1];
        if (h[0] == MSG_END) {
            if (!W.ended[src]) W.nended++;
            W.ended[src] = 1;
            if (h[1] != END_OK) stop_workers();
        } else if (h[0] >= MSG_ROW && h[0] <= MSG_DONE && u < W.nu && W.owner[u] == src) {
            if (h[0] == MSG_ROW && h[2] >= 0 && (size_t)h[2] < W.d->ntables) {
                push_row(u, h[2], m + HDR);
            } else if (h[0] == MSG_FILE && h[2] > 0 && h[2] < len - HDR) {
                m[HDR + h[2]] = '\0';            /* the path's end; the bytes follow it */
                keep_file(m + HDR, m + HDR + h[2] + 1, (size_t)(len - HDR - h[2] - 1));
            } else if (h[0] == MSG_DONE) {
                W.q[u].done = 1;
            }
        }
        free(m);
    }
}

/* Rank 0, at the end of the sweep or when it fails: every worker's END, then FINAL to each. */
static void finish_workers(void)
{
    if (W.final) return;
    take(1);
    for (int p = 1; p < mp_size; p++) post(p, TAG_DOWN, MSG_FINAL, 0, 0, NULL, 0);
    wait_sends();
    W.final = 1;
}

/* A worker, after its last unit (or failing): END, then wait for FINAL (STOPs are dropped). */
static void end_worker(int status)
{
    if (W.final) return;
    post(0, TAG_UP, MSG_END, (size_t)status, 0, NULL, 0);
    wait_sends();
    while (!W.final) {
        int len, src;
        char *m = receive(0, TAG_DOWN, 1, &len, &src);
        int32_t h[3];
        memcpy(h, m, HDR);
        W.final = h[0] == MSG_FINAL;
        free(m);
    }
}

static void notice(void)
{
    if (mp_rank == 0) {
        stop_workers();
        finish_workers();
    } else {
        end_worker(END_FAILED);
    }
}

/* ---- what a rank adds ----------------------------------------------------------------------- */

/* A row of local table *(int *)arg. */
static void added(void *arg, table *t, size_t row)
{
    const int k = *(const int *)arg;
    size_t len = table_row_text(t, row, NULL, 0);
    char *text = malloc(len + 1);
    if (!text) cli_die(W.c, "out of memory");
    table_row_text(t, row, text, len + 1);
    if (mp_rank == 0) {
        push_row(W.cur, k, text);
        free(text);
        take(0);
        flush();
    } else {
        post(0, TAG_UP, MSG_ROW, W.cur, k, text, len);
        free(text);
    }
}

/* sweep_progress.keep on a worker: the file, whole, to rank 0 (which writes it there). */
static void keep(void *arg, const char *path)
{
    (void)arg;
    FILE *f = fopen(path, "rb");
    if (!f) cli_die(W.c, "cannot open %s to send it to rank 0: %s", path, strerror(errno));
    const size_t plen = strlen(path);
    char *m = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (cap - len < 65536) {
            cap = cap ? 2 * cap : (size_t)1 << 20;
            char *g = cap < (size_t)INT_MAX - HDR - plen - 1 ? realloc(m, cap) : NULL;
            if (!g) {
                free(m);
                fclose(f);
                cli_die(W.c, "cannot send %s to rank 0: %s", path, cap < (size_t)INT_MAX - HDR -
                        plen - 1 ? "out of memory" : "over 2 GiB (one message)");
            }
            m = g;
        }
        size_t n = fread(m + len, 1, cap - len, f);
        len += n;
        if (n == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) { free(m); cli_die(W.c, "cannot read %s to send it to rank 0", path); }
    char *msg = malloc(plen + 1 + len + 1);
    if (!msg) { free(m); cli_die(W.c, "out of memory for %s", path); }
    memcpy(msg, path, plen + 1);
    if (len) memcpy(msg + plen + 1, m, len);
    free(m);
    post(0, TAG_UP, MSG_FILE, W.cur, (int)plen, msg, plen + 1 + len);
    free(msg);
}

/* sweep_progress.poll, between the points of a unit: stop when a rank has failed. Rank 0 only
 * receives here (rows reach the file between its own points, not inside a timed one). */
static int poll_stop(void *arg)
{
    (void)arg;
    if (mp_rank == 0) {
        take(0);
        return W.stopping || mp_failed();
    }
    int len, src;
    char *m;
    while ((m = receive(0, TAG_DOWN, 0, &len, &src))) {
        int32_t h[3];
        memcpy(h, m, HDR);
        if (h[0] == MSG_STOP) W.stop = 1;
        free(m);
    }
    return W.stop || mp_failed();
}

/* The file's rows as the single-process run shows them: the driver's lines on stdout. */
typedef struct { const sweep_driver *d; void *st; } echo_arg;
static void echo_file(void *arg, table *t, size_t row)
{
    echo_arg *e = arg;
    char line[512];
    if (e->d->echo(e->st, t, row, line, sizeof line)) {
        puts(line);
        fflush(stdout);
    }
}

/* ---- set up -------------------------------------------------------------------------------- */

/* Largest remaining work first, each unit to the least-loaded rank (ties: the lower unit, the
 * lower rank): owner[u], -1 for the units the table holds whole. */
static void assign(void *st, double *load)
{
    size_t *order = malloc(W.nu * sizeof *order + 1);
    double *cost = malloc(W.nu * sizeof *cost + 1);
    if (!order || !cost) { free(order); free(cost); cli_die(W.c, "out of memory"); }
    size_t k = 0;
    for (size_t u = 0; u < W.nu; u++) {
        double w, done;
        W.owner[u] = -1;
        if (!W.d->todo(st, W.local, u, &w, &done)) continue;
        cost[u] = w - done;
        size_t i = k++;
        for (; i > 0 && cost[order[i - 1]] < cost[u]; i--) order[i] = order[i - 1];
        order[i] = u;
    }
    for (int p = 0; p < mp_size; p++) load[p] = 0.0;
    for (size_t i = 0; i < k; i++) {
        int best = 0;
        for (int p = 1; p < mp_size; p++)
            if (load[p] < load[best]) best = p;
        W.owner[order[i]] = best;
        load[best] += cost[order[i]];
    }
    free(order);
    free(cost);
}

/* Nodes and ranks per node (MPI_COMM_TYPE_SHARED), for the run header. */
static void layout(int *nodes, int *per_node_max)
{
    MPI_Comm node;
    int local = 1, leader;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) ==
        MPI_SUCCESS) {
        MPI_Comm_size(node, &local);
        MPI_Comm_rank(node, &leader);
        MPI_Comm_free(&node);
    } else {
        leader = 0;
    }
    int is_leader = leader == 0;
    MPI_Allreduce(&is_leader, nodes, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(&local, per_node_max, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
}

/* The kept rows of table k, from rank 0 to every rank's copy of it. */
static void share_rows(size_t k)
{
    unsigned long long len = 0;
    char *text = NULL;
    table *file = &W.file[k], *local = &W.local[k];
    if (mp_rank == 0) {
        for (size_t r = 0; r < file->nrows; r++) len += table_row_text(file, r, NULL, 0) + 1;
    }
    MPI_Bcast(&len, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD);
    if (len > (unsigned long long)INT32_MAX)
        cli_die(W.c, "--resume: the table's rows (%llu bytes) are too large to send", len);
    text = malloc(len + 1);
    int bad = !text;
    MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (bad) { free(text); cli_die(W.c, "out of memory for the table's rows"); }
    if (mp_rank == 0) {
        size_t at = 0;
        for (size_t r = 0; r < file->nrows; r++) {
            at += table_row_text(file, r, text + at, len + 1 - at);
            text[at++] = '\n';
        }
    }
    MPI_Bcast(text, (int)len, MPI_CHAR, 0, MPI_COMM_WORLD);
    text[len] = '\0';
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n');
        *nl = '\0';
        if (table_add(local, line)) mp_fail("--resume: %s", local->err);
        line = nl + 1;
    }
    free(text);
}

/* Not a cli_defer cleanup: cli_die runs those before the fail notice, which needs these. */
static void free_queue(void)
{
    for (size_t u = 0; W.q && u < W.nu; u++) {
        for (size_t i = W.q[u].written; i < W.q[u].n; i++) free(W.q[u].row[i]);
        free(W.q[u].row);
    }
    free(W.q);
    free(W.owner);
    free(W.ended);
    free(W.req);
    free(W.buf);
    W.q = NULL;
    W.owner = NULL;
    W.ended = NULL;
    W.req = NULL;
    W.buf = NULL;
}

/* ---- the command ----------------------------------------------------------------------------- */

static int sweep(const sweep_driver *d, int argc, char **argv)
{
    mp_set_cmd(d->spec->cmd);
    /* ropekit's options; the help says what ranks change */
    static char desc[2048];
    static cli_spec spec;
    spec = *d->spec;
    snprintf(desc, sizeof desc, "%s\n\nUnder mpirun -np P (ropekit-mpi): %s", d->spec->description,
             d->mpi_help ? d->mpi_help : "the units of the sweep are spread over the\nranks, "
             "rank 0 writes the table; --threads is per rank.");
    spec.description = desc;
    static cli_ctx c;
    cli_parse(&c, &spec, argc, argv);
    memset(&W, 0, sizeof W);
    W.c = &c;
    W.d = d;

    /* 1. options and plans, every rank */
    void *st = d->setup(&c);
    const int threads = omp_get_max_threads();
    W.nu = d->units(st);
    W.owner = calloc(W.nu + 1, sizeof *W.owner);
    W.q = calloc(W.nu + 1, sizeof *W.q);
    W.ended = calloc((size_t)mp_size, 1);
    if (!W.owner || !W.q || !W.ended) cli_die(&c, "out of memory");
    sweep_open_tables(&c, d, st, W.local, 0);
    for (size_t k = 0; k < d->ntables; k++) {
        static sweep_table tt;
        memset(&tt, 0, sizeof tt);
        d->table(&c, st, k, &tt);
        if (tt.opt) snprintf(W.pre[k], sizeof W.pre[k], "%s: ", tt.opt);
    }
    mp_agree(0);
    int nodes, per_node;
    layout(&nodes, &per_node);

    /* 2. the tables, rank 0 (nothing is written unless every rank got this far) */
    if (mp_rank == 0) {
        sweep_open_tables(&c, d, st, W.file, 1);
        char line[512];
        snprintf(line, sizeof line, "mpi: ranks=%d nodes=%d max_ranks_per_node=%d "
                 "threads_per_rank=%d cores_per_node=%ld%s", mp_size, nodes, per_node, threads,
                 sysconf(_SC_NPROCESSORS_ONLN), per_node > 1 ? " (the ranks of a node share "
                 "its cores and memory: timings compete)" : "");
        printf("# %s\n", line);
        fflush(stdout);
        if (table_comment(&W.file[0], "%s", line)) cli_die(&c, "%s%s", W.pre[0], W.file[0].err);
    }
    mp_agree(0);
    for (size_t k = 0; k < d->ntables; k++) share_rows(k);
    mp_agree(0);

    /* 3. who runs what */
    double *load = calloc((size_t)mp_size, sizeof *load);
    if (!load) cli_die(&c, "out of memory");
    if (mp_rank == 0) assign(st, load);
    free(load);
    MPI_Bcast(W.owner, (int)W.nu, MPI_INT, 0, MPI_COMM_WORLD);

    /* 4. the units; rows stream to rank 0 */
    echo_arg ea = { d, st };
    if (mp_rank == 0 && d->echo) {
        W.file[0].on_add = echo_file;
        W.file[0].on_add_arg = &ea;
    }
    static const int table_index[SWEEP_MAX_TABLES] = { 0, 1, 2, 3 };
    for (size_t k = 0; k < d->ntables; k++) {
        W.local[k].on_add = added;
        W.local[k].on_add_arg = (void *)&table_index[k];
    }
    static sweep_progress p;
    memset(&p, 0, sizeof p);             /* no progress line: rank 0's stderr is mpirun's pipe */
    p.poll = poll_stop;
    if (mp_rank != 0) p.keep = keep;     /* rank 0's units write their files where they belong */
    mp_set_fail_notice(notice);
    size_t mine = 0;
    int stopped = 0;
    for (size_t u = 0; u < W.nu && !stopped; u++) {
        if (W.owner[u] != mp_rank) continue;
        if (poll_stop(NULL)) { stopped = 1; break; }
        char where[32];
        snprintf(where, sizeof where, "unit%zu", mine++);
        mp_test_kill(where);
        if (mp_test_fail(where)) cli_die(&c, "test failure at %s (ROPEKIT_MPI_FAIL_RANK)", where);
        W.cur = u;
        stopped = d->run(&c, st, W.local, u, &p);
        if (stopped || mp_failed()) break;     /* a unit short of a row is not DONE */
        if (mp_rank == 0) {
            W.q[u].done = 1;
            take(0);
            flush();
        } else {
            post(0, TAG_UP, MSG_DONE, u, 0, NULL, 0);
        }
    }
    if (mp_rank == 0) {
        if (stopped || mp_failed()) stop_workers();
        finish_workers();
        flush();
    } else {
        end_worker(mp_failed() ? END_FAILED : stopped ? END_STOPPED : END_OK);
    }
    mp_set_fail_notice(NULL);
    for (size_t k = 0; k < d->ntables; k++) W.local[k].on_add = NULL;
    mp_agree(0);

    /* 5. the summary from the whole table, rank 0 */
    if (mp_rank == 0) {
        W.file[0].on_add = NULL;
        if (W.head != W.nu) cli_die(&c, "internal error: unit %zu has no rows", W.head);
        d->summarize(&c, st, W.file);
    }
    mp_agree(0);
    free_queue();
    return cli_finish(&c);
}

int mp_cmd_scaling(int argc, char **argv) { return sweep(&scaling_driver, argc, argv); }
int mp_cmd_approx(int argc, char **argv) { return sweep(&approx_driver, argc, argv); }
int mp_cmd_train(int argc, char **argv) { return sweep(&train_compare_driver, argc, argv); }
