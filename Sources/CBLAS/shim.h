#ifndef KDGRAPH_CBLAS_SHIM_H
#define KDGRAPH_CBLAS_SHIM_H
/*
 * OpenBLAS's CBLAS interface (cblas_sgemm, ...), its thread control (openblas_set_num_threads), and
 * the Fortran LAPACK symmetric eigensolvers. Debian's OpenBLAS exports ssyevd_/dsyevd_ but ships no
 * LAPACKE header, so their Fortran prototypes are declared here (all arguments by pointer).
 */
#include <cblas.h>

void ssyevd_(const char *jobz, const char *uplo, const int *n, float *a, const int *lda, float *w,
             float *work, const int *lwork, int *iwork, const int *liwork, int *info);
void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
             double *work, const int *lwork, int *iwork, const int *liwork, int *info);

#endif
