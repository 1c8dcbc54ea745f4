/* `ropekit train --compare`: the statistics of the runs table (experiments/train_report.c).
 *
 * From the rows (arm, seed, step, ..., val_bpc) of every arm and seed:
 *   curves:  per (arm, step) the mean validation bits per character over the seeds with its
 *            t-interval (stats_mean_ci: mean +- t_{S-1}((1+level)/2) sd / sqrt(S));
 *   paired:  per (RoPE arm, step) the difference RoPE arm minus its baseline (the arm of the same
 *            kind without RoPE) seed by seed, and the mean difference with its t-interval;
 *   claims:  at the reported step, for the paper's two claims, PASS when the paired interval
 *            lies below zero (RoPE lower), NOT CONFIRMED otherwise (with the numbers).
 * Every output is a TSV with a '#' configuration line, written atomically. */
#ifndef RK_TRAIN_REPORT_H
#define RK_TRAIN_REPORT_H

#include <stddef.h>
#include <stdio.h>

#include "table.h"
#include "ropekit.h"

#define TRAIN_MAX_ARMS 16
#define TRAIN_MAX_SEEDS 64

typedef struct {
    char         label[48];     /* "softmax", "softmax:none"                                  */
    char         variant[32];
    int          pe;            /* lm_pe                                                      */
    rk_kind      kind;
    rk_rope_mode rope;
    rk_map       map;
    int          baseline;      /* RoPE arms: index of the arm they are compared with, or -1  */
} train_arm;

/* The baseline of every RoPE arm: the first arm of the same kind (and map) without RoPE,
 * preferring one with learned positions. */
void train_pair_arms(train_arm *arms, size_t narms);

typedef struct {
    const train_arm *arms;
    size_t           narms;
    const unsigned long *seeds;
    size_t           nseeds;
    const size_t    *steps;     /* the evaluated steps, increasing                             */
    size_t           nsteps;
    size_t           report_step;
    double           level;
    const char      *config;    /* the runs table's configuration line                        */
} train_report_cfg;

/* Claim ids and texts (claims.tsv). A claim's verdict comes from its primary pair: for
 * "performer" the arm performer-rope-qk (RoPE before the feature map, as performer-pytorch, the
 * code behind the paper's Figure 3) if present, else the first performer RoPE arm; for
 * "softmax" softmax-rope. The other pairs are reported with primary = 0. */
#define TRAIN_CLAIM_PERFORMER "RoPE speeds up Performer LM training"
#define TRAIN_CLAIM_SOFTMAX "RoFormer trains faster than absolute positions"

/* Write dir/curves.tsv, dir/paired.tsv and dir/claims.tsv from the runs table, and print the
 * summary (the intervals at the reported step and the verdicts) on `out`. 0, or -1 with a
 * message in err. */
int train_report(const table *runs, const train_report_cfg *rc, const char *dir, FILE *out,
                 char *err, size_t errlen);

/* Write dir/extrapolation_summary.tsv: per (arm, scaling, factor) the mean bits per character
 * over the seeds with its interval, from the extrapolation table. */
int train_report_extrapolation(const table *ext, const train_report_cfg *rc, const char *dir,
                               FILE *out, char *err, size_t errlen);

/* A rows file written atomically (rk__out): "# config", the header, the rows. Used by the
 * summaries above. */
typedef struct train_tsv train_tsv;
train_tsv *train_tsv_open(const char *path, const char *config, const char *header, char *err,
                          size_t errlen);
void train_tsv_row(train_tsv *t, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
int  train_tsv_commit(train_tsv *t, char *err, size_t errlen);   /* frees t */
void train_tsv_abort(train_tsv *t);                               /* frees t; NULL-safe */

#endif
