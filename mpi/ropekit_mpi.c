/* ropekit-mpi: ropekit's commands on MPI (issue 18). Run under mpirun:
 *
 *   mpirun -np P ropekit-mpi attend --variant softmax --causal --q Q.npy ... --out O.npy
 *   mpirun -np P ropekit-mpi bench --n 65536 --d 64 --causal
 *   mpirun -np P ropekit-mpi scaling|approx [their ropekit options] --out T.tsv [--resume]
 *   mpirun -np P ropekit-mpi train --compare ARMS --seeds S --dir DIR [ropekit train's options]
 *
 * Every rank runs the same command; rank 0 reads and writes the files (attend --shard: every
 * rank reads its own rows) and alone prints; an error on any rank ends every rank with that
 * rank's one-line message and status 2 (mpi/mp.h). OpenMP threads inside each rank. */
#include "mp.h"

#include <stdio.h>
#include <string.h>
#include <gsl/gsl_errno.h>

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    { "attend", mp_cmd_attend, "ropekit attend over the ranks: softmax by ring attention, "
      "performer / linear by a prefix scan of states" },
    { "bench", mp_cmd_bench, "distributed softmax on generated data: time, elements sent per "
      "rank against the ring's model, peak memory per rank" },
    { "scaling", mp_cmd_scaling, "ropekit scaling with its (variant, mask) series spread over "
      "the ranks; rank 0 writes the table" },
    { "approx", mp_cmd_approx, "ropekit approx with its rows spread over the ranks; rank 0 "
      "writes the table (the same bytes for any P)" },
    { "train", mp_cmd_train, "ropekit train --compare with its (arm, seed) runs spread over the "
      "ranks; rank 0 writes the tables and holds every final checkpoint" },
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: mpirun -np P ropekit-mpi <command> [options]\n"
               "       ropekit-mpi help | --help | --version\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'ropekit-mpi <command> --help' describes a command's options.\n"
               "Exit status: 0 on success, 2 on any error on any rank (one line on stderr).\n");
}

int main(int argc, char **argv)
{
    gsl_set_error_handler_off();
    mp_init(&argc, &argv);
    if (argc < 2) {
        if (mp_rank == 0) usage(stderr);
        mp_exit(CLI_EXIT_ERROR);
    }
    const char *name = argv[1];
    if (strcmp(name, "--version") == 0) {
        printf("ropekit-mpi %s\n", rk_version());
        mp_exit(0);
    }
    if (strcmp(name, "help") == 0 || strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
        usage(stdout);
        mp_exit(0);
    }
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0) {
            int rc = commands[i].run(argc - 1, argv + 1);
            mp_exit(rc);
        }
    mp_set_cmd(name);
    cli_die(NULL, "unknown command '%s' (run 'ropekit-mpi help')", name);
}
