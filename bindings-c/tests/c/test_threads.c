/* One engine used from several threads at once (exports, waits, reads, audit callbacks on worker threads), and
 * tp_last_error being per thread. Usage: test_threads WORKDIR. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>

#include "tp_test.h"

#define THREADS 4
#define JOBS_PER_THREAD 3

static tp_engine *engine;
static char cred[256];
static atomic_int events = 0;

static int count_event(void *userdata, const char *event_json) {
    (void)userdata;
    (void)event_json;
    atomic_fetch_add(&events, 1);
    return 0;
}

static void *worker(void *arg) {
    long n = (long)arg;
    for (int i = 0; i < JOBS_PER_THREAD; i++) {
        char *job = NULL, id[64], state[32];
        const char *format = (i % 2 == 0) ? "csv" : "xpt";
        char request[256];
        snprintf(request, sizeof request, "{\"study\": \"S1\", \"datasets\": [\"DM\"], \"format\": \"%s\"}", format);
        CHECK_OK(tp_engine_export_data(engine, cred, request, &job));
        json_str(job, "id", id, sizeof id);
        tp_string_free(job);
        job = NULL;
        CHECK_OK(tp_engine_wait(engine, id, TP_WAIT_FOREVER, &job));
        CHECK(strcmp(json_str(job, "state", state, sizeof state), "succeeded") == 0);
        tp_string_free(job);
        job = NULL;
        CHECK_OK(tp_engine_list_jobs(engine, cred, "{\"limit\": 100}", &job));
        tp_string_free(job);
    }
    /* This thread's failure is its own. */
    if (n == 0) {
        CHECK_STATUS(tp_engine_get_job(engine, cred, "nope", &(char *){NULL}), TP_STATUS_NOT_FOUND, "not_found");
    }
    return NULL;
}

static void *fresh_thread(void *arg) {
    (void)arg;
    /* Nothing failed on this thread, whatever failed on others. */
    CHECK(tp_last_error() == NULL);
    CHECK_STATUS(tp_convert("missing.csv", "out.unknown", "{"), TP_STATUS_VALIDATION, "invalid_request");
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s WORKDIR\n", argv[0]);
        return 2;
    }
    char home[1200];
    path_join(home, sizeof home, argv[1], "home");
    char *key = NULL;
    CHECK_OK(tp_engine_open(home, "{\"workers\": 3}", &engine));
    if (engine == NULL) {
        return 1;
    }
    CHECK_OK(tp_engine_initial_api_key(engine, &key));
    snprintf(cred, sizeof cred, "ApiKey %s", key);
    tp_string_free(key);
    CHECK_OK(tp_engine_add_audit_callback(engine, count_event, NULL, NULL));
    struct ArrowArrayStream stream;
    demo_stream(&stream, -1, NULL);
    CHECK_OK(tp_engine_add_dataset(engine, "S1", "DM", &stream, NULL));

    /* The main thread fails first; its error stays its own. */
    CHECK_STATUS(tp_engine_list_jobs(engine, cred, "{\"limit\": 0}", &(char *){NULL}), TP_STATUS_VALIDATION,
                 "out_of_range");
    pthread_t threads[THREADS + 1];
    for (long i = 0; i < THREADS; i++) {
        CHECK(pthread_create(&threads[i], NULL, worker, (void *)i) == 0);
    }
    CHECK(pthread_create(&threads[THREADS], NULL, fresh_thread, NULL) == 0);
    for (int i = 0; i <= THREADS; i++) {
        pthread_join(threads[i], NULL);
    }
    check_reason(__FILE__, __LINE__, "out_of_range");

    char *page = NULL;
    CHECK_OK(tp_engine_list_jobs(engine, cred, "{\"limit\": 100}", &page));
    char want[32];
    snprintf(want, sizeof want, "\"total\":%d", THREADS * JOBS_PER_THREAD);
    CHECK(page != NULL && strstr(page, want) != NULL);
    tp_string_free(page);
    uint64_t n = 0;
    CHECK_OK(tp_engine_verify_audit(engine, cred, &n));
    /* Every event after the callback was added reached it (the verify call's own event comes after the count). */
    CHECK((int)n - 2 <= atomic_load(&events) && atomic_load(&events) <= (int)n);
    tp_engine_free(engine);

    if (tp_failures > 0) {
        fprintf(stderr, "test_threads: %d checks failed\n", tp_failures);
        return 1;
    }
    printf("test_threads: all checks passed (%d jobs on %d threads, %d audit events)\n", THREADS * JOBS_PER_THREAD,
           THREADS, atomic_load(&events));
    return 0;
}
