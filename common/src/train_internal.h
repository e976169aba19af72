/* Private to the compute core: what fit.c needs from train.c. */
#ifndef MAAS_TRAIN_INTERNAL_H
#define MAAS_TRAIN_INTERNAL_H

#include "maas/train.h"

/* A trainer that only evaluates (no optimizer state); it never writes m. *out NULL and
 * the error's code on failure. */
maas_err maas__trainer_create_eval(maas_trainer **out, const maas_model *m, const maas_compile *c,
                                   int batch, char *errstr, size_t errstr_size);
int maas__trainer_batch(const maas_trainer *tr);
/* Tests: the optimizer's instruction set (0 baseline, 1 AVX2, 2 AVX-512F), capped
 * at what this CPU runs; returns the one now in use. */
int maas__trainer_set_isa(maas_trainer *tr, int isa);
/* Mean loss and summed accuracy of given model outputs (rows x n_outputs). */
void maas__trainer_loss_of_outputs(maas_trainer *tr, const float *out, const float *y, int rows,
                                   double *loss, double *acc_sum);

#endif
