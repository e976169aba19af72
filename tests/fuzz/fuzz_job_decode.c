/*
 * libFuzzer target: the job and result decoders on arbitrary bytes. Whatever
 * decodes must re-encode, and the re-encoding must decode to the same bytes.
 */
#include "maas/base.h"
#include "maas/job.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void die(const char *what, const char *err) {
    fprintf(stderr, "fuzz_job_decode: %s failed: %s\n", what, err);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[MAAS_ERRSTR_SIZE];
    maas_job j;
    if (maas_job_decode(data, size, &j, err, sizeof(err)) == MAAS_OK) {
        unsigned char *a, *b;
        size_t la, lb;
        maas_job k;
        if (maas_job_encode(&j, &a, &la, err, sizeof(err)) != MAAS_OK) die("encode", err);
        if (maas_job_decode(a, la, &k, err, sizeof(err)) != MAAS_OK) die("re-decode", err);
        if (maas_job_encode(&k, &b, &lb, err, sizeof(err)) != MAAS_OK) die("re-encode", err);
        if (la != lb || memcmp(a, b, la) != 0) die("round trip", "bytes differ");
        free(a);
        free(b);
        maas_job_release(&k);
    }
    maas_job_release(&j);
    maas_result r;
    if (maas_result_decode(data, size, &r, err, sizeof(err)) == MAAS_OK) maas_result_release(&r);
    return 0;
}
