/* ropekit: the command line. `ropekit <command> [options]`; `ropekit help` lists the commands.
 *
 * The subcommands come from RK_CLI_COMMANDS in cli.h (one line each: name and summary); each
 * lives in experiments/cmd_<name>.c as int cmd_<name>(int argc, char **argv), with argv[0] the
 * command's name. Exit status: 0 success, 2 any error (one line on stderr). */
#include "cli.h"

#include <stdio.h>
#include <string.h>
#include <gsl/gsl_errno.h>

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

#define RK_CLI_ENTRY(name, summary) { #name, cmd_##name, summary },
static const command commands[] = { RK_CLI_COMMANDS(RK_CLI_ENTRY) };
#undef RK_CLI_ENTRY
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: ropekit <command> [options]\n"
               "       ropekit help [<command>] | --help | --version\n\n"
               "RoPE (RoFormer) and attention on .npy arrays (float32 or float64, C order).\n\n"
               "commands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'ropekit <command> --help' describes a command's options.\n"
               "Exit status: 0 on success, 2 on any error (one line on stderr).\n");
}

static const command *find(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

int main(int argc, char **argv)
{
    gsl_set_error_handler_off();
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_ERROR;
    }
    const char *name = argv[1];
    if (strcmp(name, "--version") == 0) {
        if (argc > 2) {
            fprintf(stderr, "ropekit: --version takes no arguments\n");
            return CLI_EXIT_ERROR;
        }
        printf("ropekit %s\n", rk_version());
        return 0;
    }
    if (strcmp(name, "help") == 0 || strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
        if (argc == 2) {
            usage(stdout);
            return 0;
        }
        const command *cmd = argc == 3 ? find(argv[2]) : NULL;
        if (!cmd) {
            if (argc > 3) fprintf(stderr, "ropekit: help takes at most one command\n");
            else cli_die(NULL, "unknown command '%s' (run 'ropekit help')", argv[2]);
            return CLI_EXIT_ERROR;
        }
        static char help_opt[] = "--help";
        char *help_argv[] = { argv[2], help_opt, NULL };
        return cmd->run(2, help_argv);
    }
    const command *cmd = find(name);
    if (!cmd) {
        cli_die(NULL, "unknown command '%s' (run 'ropekit help')", name);  /* escapes, exits 2 */
    }
    return cmd->run(argc - 1, argv + 1);
}
