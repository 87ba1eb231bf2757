/* Every exported function with each required pointer NULL, with bad JSON and with bad UTF-8: the documented
 * status, the standard error JSON naming the argument, and outputs left untouched. Usage: test_errors WORKDIR. */
#define _POSIX_C_SOURCE 200809L
#include "tp_test.h"

/* An output pointer must keep this value when a call fails. */
static char SENTINEL_TEXT[] = "untouched";
#define SENTINEL SENTINEL_TEXT

/* The call fails with TP_STATUS_NULL_ARGUMENT and the error's field is `field`. */
#define CHECK_NULL(call, field)                                                                      \
    do {                                                                                             \
        CHECK_STATUS(call, TP_STATUS_NULL_ARGUMENT, "null_argument");                                \
        const char *last_ = tp_last_error();                                                         \
        if (last_ == NULL || !strstr(last_, "\"field\":\"" field "\"") ||                            \
            !strstr(last_, "\"code\":\"EXP002\"")) {                                                 \
            fprintf(stderr, "%s:%d: expected field %s in %s\n", __FILE__, __LINE__, field,           \
                    last_ ? last_ : "(none)");                                                       \
            tp_failures++;                                                                           \
        }                                                                                            \
    } while (0)

static int never_called(void *userdata, const char *event_json) {
    (void)userdata;
    (void)event_json;
    return 0;
}

static int freed = 0;
static void count_free(void *userdata) {
    (void)userdata;
    freed++;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s WORKDIR\n", argv[0]);
        return 2;
    }
    char home[1200], file[1200], cred[256];
    path_join(home, sizeof home, argv[1], "home");
    path_join(file, sizeof file, argv[1], "out.csv");
    const char *req = "{\"study\": \"S1\", \"datasets\": [\"DM\"], \"format\": \"csv\"}";
    const char *job_id = "018f0000-0000-7000-8000-000000000000";
    const char *bad_utf8 = "S\xff\xfe";
    char *out = SENTINEL;
    tp_engine *engine = (tp_engine *)(void *)SENTINEL;

    /* tp_engine_open */
    CHECK_NULL(tp_engine_open(NULL, "{}", &engine), "home");
    CHECK_NULL(tp_engine_open(home, "{}", NULL), "out");
    CHECK(engine == (tp_engine *)(void *)SENTINEL);
    CHECK_STATUS(tp_engine_open(home, "{\"workers\": \"two\"}", &engine), TP_STATUS_VALIDATION, "invalid_request");
    CHECK_STATUS(tp_engine_open(home, bad_utf8, &engine), TP_STATUS_VALIDATION, "invalid_utf8");
    CHECK(engine == (tp_engine *)(void *)SENTINEL);
    engine = NULL;
    CHECK_OK(tp_engine_open(home, "{\"org\": \"acme\", \"workers\": 1}", &engine));
    if (engine == NULL) {
        return 1;
    }
    CHECK_NULL(tp_engine_initial_api_key(NULL, &out), "engine");
    CHECK_NULL(tp_engine_initial_api_key(engine, NULL), "api_key");
    CHECK(out == SENTINEL);
    CHECK_OK(tp_engine_initial_api_key(engine, &out));
    snprintf(cred, sizeof cred, "ApiKey %s", out);
    tp_string_free(out);
    out = SENTINEL;

    /* tp_engine_add_dataset: the stream is taken over even when another argument is NULL. */
    struct ArrowArrayStream stream;
    int released = 0;
    demo_stream(&stream, -1, &released);
    CHECK_NULL(tp_engine_add_dataset(NULL, "S1", "DM", &stream, NULL), "engine");
    CHECK(stream.release == NULL && released == 1);
    demo_stream(&stream, -1, &released);
    CHECK_NULL(tp_engine_add_dataset(engine, NULL, "DM", &stream, NULL), "study");
    CHECK(stream.release == NULL && released == 2);
    demo_stream(&stream, -1, &released);
    CHECK_NULL(tp_engine_add_dataset(engine, "S1", NULL, &stream, NULL), "name");
    CHECK(stream.release == NULL && released == 3);
    CHECK_NULL(tp_engine_add_dataset(engine, "S1", "DM", NULL, NULL), "stream");
    demo_stream(&stream, -1, &released);
    CHECK_STATUS(tp_engine_add_dataset(engine, "S1", "DM", &stream, "{\"columns\": 3}"), TP_STATUS_VALIDATION,
                 "invalid_metadata");
    demo_stream(&stream, -1, &released);
    CHECK_STATUS(tp_engine_add_dataset(engine, "S1", "DM", &stream, "{\"columns\": [{\"name\": \"NOPE\"}]}"),
                 TP_STATUS_VALIDATION, NULL);
    demo_stream(&stream, -1, &released);
    CHECK_STATUS(tp_engine_add_dataset(engine, bad_utf8, "DM", &stream, NULL), TP_STATUS_VALIDATION,
                 "invalid_utf8");
    CHECK(released == 6);
    /* A released stream is refused. */
    CHECK_STATUS(tp_engine_add_dataset(engine, "S1", "DM", &stream, NULL), TP_STATUS_VALIDATION, "invalid_stream");
    demo_stream(&stream, -1, &released);
    CHECK_OK(tp_engine_add_dataset(engine, "S1", "DM", &stream, NULL));

    /* The four exports: NULL engine, credential, request, output; bad JSON; a bad credential. */
    tp_status (*exports[])(tp_engine *, const char *, const char *, char **) = {
        tp_engine_export_data, tp_engine_export_report, tp_engine_export_dashboard, tp_engine_bulk_export};
    for (size_t i = 0; i < sizeof exports / sizeof exports[0]; i++) {
        CHECK_NULL(exports[i](NULL, cred, req, &out), "engine");
        CHECK_NULL(exports[i](engine, NULL, req, &out), "credential");
        CHECK_NULL(exports[i](engine, cred, NULL, &out), "request_json");
        CHECK_NULL(exports[i](engine, cred, req, NULL), "job_json");
        CHECK_STATUS(exports[i](engine, cred, "{\"study\": ", &out), TP_STATUS_VALIDATION, "invalid_request");
        CHECK_STATUS(exports[i](engine, cred, "[]", &out), TP_STATUS_VALIDATION, "invalid_request");
        CHECK_STATUS(exports[i](engine, cred, "{\"nope\": 1}", &out), TP_STATUS_VALIDATION, "invalid_request");
        CHECK_STATUS(exports[i](engine, bad_utf8, req, &out), TP_STATUS_VALIDATION, "invalid_utf8");
        CHECK(out == SENTINEL);
    }
    CHECK_STATUS(tp_engine_export_data(engine, "ApiKey tp_nope", req, &out), TP_STATUS_UNAUTHORIZED, NULL);
    CHECK_STATUS(tp_engine_export_data(engine, "", req, &out), TP_STATUS_UNAUTHORIZED, NULL);
    CHECK(out == SENTINEL);

    /* list, get, wait, wait_as, cancel */
    CHECK_NULL(tp_engine_list_jobs(NULL, cred, NULL, &out), "engine");
    CHECK_NULL(tp_engine_list_jobs(engine, NULL, NULL, &out), "credential");
    CHECK_NULL(tp_engine_list_jobs(engine, cred, NULL, NULL), "page_json");
    CHECK_STATUS(tp_engine_list_jobs(engine, cred, "{\"limit\": ", &out), TP_STATUS_VALIDATION, "invalid_request");
    CHECK_STATUS(tp_engine_list_jobs(engine, cred, "{\"limit\": \"x\"}", &out), TP_STATUS_VALIDATION,
                 "invalid_request");
    CHECK_STATUS(tp_engine_list_jobs(engine, cred, "{\"page\": 0}", &out), TP_STATUS_VALIDATION, "out_of_range");
    CHECK_NULL(tp_engine_get_job(NULL, cred, job_id, &out), "engine");
    CHECK_NULL(tp_engine_get_job(engine, NULL, job_id, &out), "credential");
    CHECK_NULL(tp_engine_get_job(engine, cred, NULL, &out), "job_id");
    CHECK_NULL(tp_engine_get_job(engine, cred, job_id, NULL), "job_json");
    CHECK_NULL(tp_engine_wait(NULL, job_id, 0, &out), "engine");
    CHECK_NULL(tp_engine_wait(engine, NULL, 0, &out), "job_id");
    CHECK_NULL(tp_engine_wait(engine, job_id, 0, NULL), "job_json");
    CHECK_NULL(tp_engine_wait_as(NULL, cred, job_id, 0, &out), "engine");
    CHECK_NULL(tp_engine_wait_as(engine, NULL, job_id, 0, &out), "credential");
    CHECK_NULL(tp_engine_wait_as(engine, cred, NULL, 0, &out), "job_id");
    CHECK_NULL(tp_engine_wait_as(engine, cred, job_id, 0, NULL), "job_json");
    CHECK_NULL(tp_engine_cancel(NULL, cred, job_id, &out), "engine");
    CHECK_NULL(tp_engine_cancel(engine, NULL, job_id, &out), "credential");
    CHECK_NULL(tp_engine_cancel(engine, cred, NULL, &out), "job_id");
    CHECK_NULL(tp_engine_cancel(engine, cred, job_id, NULL), "job_json");
    CHECK_STATUS(tp_engine_cancel(engine, cred, "x", &out), TP_STATUS_NOT_FOUND, "not_found");
    CHECK(out == SENTINEL);

    /* download, download_artifact */
    CHECK_NULL(tp_engine_download(NULL, cred, job_id, file), "engine");
    CHECK_NULL(tp_engine_download(engine, NULL, job_id, file), "credential");
    CHECK_NULL(tp_engine_download(engine, cred, NULL, file), "job_id");
    CHECK_NULL(tp_engine_download(engine, cred, job_id, NULL), "path");
    CHECK_NULL(tp_engine_download_artifact(NULL, cred, job_id, "dm.csv", file), "engine");
    CHECK_NULL(tp_engine_download_artifact(engine, NULL, job_id, "dm.csv", file), "credential");
    CHECK_NULL(tp_engine_download_artifact(engine, cred, NULL, "dm.csv", file), "job_id");
    CHECK_NULL(tp_engine_download_artifact(engine, cred, job_id, "dm.csv", NULL), "path");
    CHECK_STATUS(tp_engine_download(engine, cred, job_id, file), TP_STATUS_NOT_FOUND, NULL);
    CHECK(read_file(file, NULL) == NULL);

    /* formats, verify_audit */
    CHECK_NULL(tp_engine_formats(NULL, cred, &out), "engine");
    CHECK_NULL(tp_engine_formats(engine, NULL, &out), "credential");
    CHECK_NULL(tp_engine_formats(engine, cred, NULL), "formats_json");
    CHECK_STATUS(tp_engine_formats(engine, "ApiKey tp_nope", &out), TP_STATUS_UNAUTHORIZED, NULL);
    uint64_t events = 12345;
    CHECK_NULL(tp_engine_verify_audit(NULL, cred, &events), "engine");
    CHECK_NULL(tp_engine_verify_audit(engine, NULL, &events), "credential");
    CHECK_NULL(tp_engine_verify_audit(engine, cred, NULL), "events");
    CHECK_STATUS(tp_engine_verify_audit(engine, "ApiKey tp_nope", &events), TP_STATUS_UNAUTHORIZED, NULL);
    CHECK(events == 12345);
    CHECK(out == SENTINEL);

    /* purge */
    CHECK_NULL(tp_engine_purge(NULL, cred, &out), "engine");
    CHECK_NULL(tp_engine_purge(engine, NULL, &out), "credential");
    CHECK_NULL(tp_engine_purge(engine, cred, NULL), "result_json");
    CHECK_STATUS(tp_engine_purge(engine, "ApiKey tp_nope", &out), TP_STATUS_UNAUTHORIZED, NULL);
    CHECK_STATUS(tp_engine_purge(engine, bad_utf8, &out), TP_STATUS_VALIDATION, "invalid_utf8");
    CHECK(out == SENTINEL);

    /* add_audit_callback: on failure the userdata is not taken (free_userdata is not called). */
    CHECK_NULL(tp_engine_add_audit_callback(NULL, never_called, NULL, count_free), "engine");
    CHECK_NULL(tp_engine_add_audit_callback(engine, NULL, NULL, count_free), "fn");
    CHECK(freed == 0);
    CHECK_OK(tp_engine_add_audit_callback(engine, never_called, NULL, NULL));
    CHECK_OK(tp_engine_add_audit_callback(engine, never_called, NULL, count_free));

    /* tp_convert */
    CHECK_NULL(tp_convert(NULL, file, NULL), "input_path");
    CHECK_NULL(tp_convert(file, NULL, NULL), "output_path");
    CHECK_STATUS(tp_convert(file, file, "{\"overwrite\": \"yes\"}"), TP_STATUS_VALIDATION, "invalid_request");
    CHECK_STATUS(tp_convert(file, file, bad_utf8), TP_STATUS_VALIDATION, "invalid_utf8");

    /* NULL is a no-op for the two free functions. */
    tp_string_free(NULL);
    tp_engine_free(engine);
    CHECK(freed == 1);
    tp_engine_free(NULL);

    if (tp_failures > 0) {
        fprintf(stderr, "test_errors: %d checks failed\n", tp_failures);
        return 1;
    }
    printf("test_errors: all checks passed\n");
    return 0;
}
