/* The whole flow through the C API: open (creating the home), add a dataset through an ArrowArrayStream, every
 * export, wait, list, get, download, formats, the audit callback (counting, refusing, freed), cancel, reopen, and
 * tp_convert. Usage: test_flow WORKDIR (an empty directory). */
#define _POSIX_C_SOURCE 200809L
#include <stdatomic.h>

#include "tp_test.h"

typedef struct {
    atomic_int events;
    atomic_int denied;
    atomic_int refuse;
} audit_log;

static atomic_int freed_logs = 0;

static int on_event(void *userdata, const char *event_json) {
    audit_log *log = userdata;
    atomic_fetch_add(&log->events, 1);
    if (strstr(s_(event_json), "\"outcome\":\"denied\"") != NULL) {
        atomic_fetch_add(&log->denied, 1);
    }
    return atomic_load(&log->refuse) ? 1 : 0;
}

static void free_log(void *userdata) {
    (void)userdata;
    atomic_fetch_add(&freed_logs, 1);
}

static char work[1024];

static void at(char *out, size_t n, const char *name) {
    path_join(out, n, work, name);
}

/* Starts an export with `start`, waits for it, and checks that it succeeded; the job id goes to `id`. */
static void export_and_wait(tp_engine *engine, const char *cred, const char *request,
                            tp_status (*start)(tp_engine *, const char *, const char *, char **), char *id) {
    char *job = NULL, state[32];
    CHECK_OK(start(engine, cred, request, &job));
    CHECK(strcmp(json_str(job, "state", state, sizeof state), "queued") == 0);
    json_str(job, "id", id, 64);
    CHECK(strlen(id) == 36);
    tp_string_free(job);
    job = NULL;
    CHECK_OK(tp_engine_wait(engine, id, TP_WAIT_FOREVER, &job));
    CHECK(strcmp(json_str(job, "state", state, sizeof state), "succeeded") == 0);
    if (strcmp(state, "succeeded") != 0) {
        fprintf(stderr, "  job: %s\n", job ? job : "(none)");
    }
    tp_string_free(job);
}

/* Downloads `artifact` (NULL: the main one) of job `id` to WORKDIR/`name` and returns the file's content. */
static char *download(tp_engine *engine, const char *cred, const char *id, const char *artifact, const char *name,
                      size_t *size) {
    char path[1200];
    at(path, sizeof path, name);
    CHECK_OK(tp_engine_download_artifact(engine, cred, id, artifact, path));
    char *content = read_file(path, size);
    CHECK(content != NULL);
    return content;
}

static int contains(const char *bytes, size_t size, const char *text) {
    size_t n = strlen(text);
    for (size_t i = 0; i + n <= size; i++) {
        if (memcmp(bytes + i, text, n) == 0) {
            return 1;
        }
    }
    return 0;
}

static void check_starts(const char *content, size_t size, const char *prefix, size_t n) {
    CHECK(content != NULL && size >= n && memcmp(content, prefix, n) == 0);
}

static void flow(void) {
    char home[1200], path[1200], cred[256], id[64], id2[64], state[32];
    char *text = NULL;
    size_t size = 0;
    at(home, sizeof home, "home");

    /* Open creates the home from the settings and keeps the first admin key, once. */
    tp_engine *engine = NULL;
    CHECK_OK(tp_engine_open(home, "{\"org\": \"acme\"}", &engine));
    CHECK(engine != NULL);
    if (engine == NULL) {
        return;
    }
    CHECK_OK(tp_engine_initial_api_key(engine, &text));
    CHECK(text != NULL && strncmp(text, "tp_", 3) == 0);
    snprintf(cred, sizeof cred, "ApiKey %s", text ? text : "");
    tp_string_free(text);
    text = NULL;
    CHECK_STATUS(tp_engine_initial_api_key(engine, &text), TP_STATUS_NOT_FOUND, "no_initial_key");
    CHECK(text == NULL);

    audit_log log;
    atomic_init(&log.events, 0);
    atomic_init(&log.denied, 0);
    atomic_init(&log.refuse, 0);
    CHECK_OK(tp_engine_add_audit_callback(engine, on_event, &log, free_log));

    /* Datasets through the Arrow C stream interface: the library takes the streams over. */
    struct ArrowArrayStream stream;
    int released = 0;
    demo_stream(&stream, -1, &released);
    CHECK_OK(tp_engine_add_dataset(engine, "S1", "DM", &stream,
                                   "{\"label\": \"Demographics\", \"columns\": [{\"name\": \"AGE\", \"label\": "
                                   "\"Age\"}]}"));
    CHECK(stream.release == NULL && released == 1);
    demo_stream(&stream, -1, &released);
    CHECK_OK(tp_engine_add_dataset(engine, "S1", "AE", &stream, NULL));
    CHECK(stream.release == NULL && released == 2);
    /* A stream that fails is refused, and released all the same. */
    demo_stream(&stream, 1, &released);
    CHECK_STATUS(tp_engine_add_dataset(engine, "S1", "XX", &stream, NULL), TP_STATUS_VALIDATION,
                 "invalid_stream");
    CHECK(stream.release == NULL && released == 3);

    /* export_data to CSV, wait, get, list, download. */
    export_and_wait(engine, cred, "{\"study\": \"S1\", \"datasets\": [\"DM\"], \"format\": \"csv\"}",
                    tp_engine_export_data, id);
    CHECK(atomic_load(&log.events) >= 3);
    CHECK_OK(tp_engine_get_job(engine, cred, id, &text));
    CHECK(strcmp(json_str(text, "state", state, sizeof state), "succeeded") == 0);
    CHECK(strstr(s_(text), "\"name\":\"dm.csv\"") != NULL && strstr(s_(text), "\"sha256\":\"") != NULL);
    tp_string_free(text);
    CHECK_OK(tp_engine_list_jobs(engine, cred, "{\"limit\": 20, \"page\": 1}", &text));
    CHECK(strstr(s_(text), "\"total\":1") != NULL && strstr(s_(text), id) != NULL);
    tp_string_free(text);
    CHECK_OK(tp_engine_list_jobs(engine, cred, NULL, &text));
    CHECK(strstr(s_(text), "\"limit\":20") != NULL);
    tp_string_free(text);
    CHECK_STATUS(tp_engine_list_jobs(engine, cred, "{\"limit\": 500}", &text), TP_STATUS_VALIDATION,
                 "out_of_range");

    char *csv = download(engine, cred, id, NULL, "dm.csv", &size);
    CHECK(csv != NULL && strcmp(csv, DEMO_CSV) == 0);
    if (csv != NULL && strcmp(csv, DEMO_CSV) != 0) {
        fprintf(stderr, "  dm.csv:\n%s\n", csv);
    }
    free(csv);
    at(path, sizeof path, "dm.csv");
    CHECK_STATUS(tp_engine_download(engine, cred, id, path), TP_STATUS_CONFLICT, "artifact_exists");
    at(path, sizeof path, "dm-again.csv");
    CHECK_OK(tp_engine_download(engine, cred, id, path));

    /* XPT: the file starts with the SAS XPORT library header record. */
    export_and_wait(engine, cred, "{\"study\": \"S1\", \"datasets\": [\"DM\"], \"format\": \"xpt\"}",
                    tp_engine_export_data, id);
    char *xpt = download(engine, cred, id, NULL, "dm.xpt", &size);
    check_starts(xpt, size, "HEADER RECORD*******LIBRARY HEADER RECORD!!!!!!!", 48);
    CHECK(size % 80 == 0);
    free(xpt);

    /* Two datasets: two artifacts and a manifest, so the artifact must be named. */
    export_and_wait(engine, cred, "{\"study\": \"S1\", \"datasets\": [\"DM\", \"AE\"], \"format\": \"csv\"}",
                    tp_engine_export_data, id);
    at(path, sizeof path, "which.csv");
    CHECK_STATUS(tp_engine_download(engine, cred, id, path), TP_STATUS_VALIDATION, "artifact_required");
    csv = download(engine, cred, id, "ae.csv", "ae.csv", &size);
    CHECK(csv != NULL && strcmp(csv, DEMO_CSV) == 0);
    free(csv);
    char *manifest = download(engine, cred, id, "manifest.json", "manifest.json", &size);
    CHECK(manifest != NULL && strstr(s_(manifest), "sha256") != NULL && strstr(s_(manifest), "dm.csv") != NULL);
    free(manifest);

    /* A report, a dashboard and a bulk package. */
    export_and_wait(engine, cred,
                    "{\"report\": {\"study\": \"S1\", \"title\": \"Safety listing\", \"sections\": [{\"type\": "
                    "\"text\", \"body\": \"All subjects.\"}, {\"type\": \"table\", \"dataset\": \"DM\"}]}, "
                    "\"format\": \"html\"}",
                    tp_engine_export_report, id);
    char *html = download(engine, cred, id, NULL, "report.html", &size);
    CHECK(html != NULL && strstr(s_(html), "Safety listing") != NULL && strstr(s_(html), "S1-003") != NULL);
    free(html);
    export_and_wait(engine, cred,
                    "{\"dashboard\": {\"study\": \"S1\", \"title\": \"Enrolment\", \"tiles\": [{\"label\": "
                    "\"Subjects\", \"dataset\": \"DM\", \"measure\": \"count\"}]}, \"format\": \"json\"}",
                    tp_engine_export_dashboard, id);
    char *dash = download(engine, cred, id, NULL, "dashboard.json", &size);
    CHECK(dash != NULL && strstr(s_(dash), "Enrolment") != NULL);
    free(dash);
    export_and_wait(engine, cred, "{\"study\": \"S1\", \"datasets\": [\"DM\", \"AE\"], \"format\": \"xpt\"}",
                    tp_engine_bulk_export, id2);
    char *zip = download(engine, cred, id2, NULL, "package.zip", &size);
    check_starts(zip, size, "PK\x03\x04", 4);
    free(zip);

    /* Formats, audit verification, cancel of a finished job. */
    CHECK_OK(tp_engine_formats(engine, cred, &text));
    CHECK(strstr(s_(text), "\"id\":\"xpt\"") != NULL && strstr(s_(text), "\"id\":\"csv\"") != NULL);
    tp_string_free(text);
    uint64_t events = 0;
    CHECK_OK(tp_engine_verify_audit(engine, cred, &events));
    CHECK(events >= (uint64_t)atomic_load(&log.events));
    CHECK_STATUS(tp_engine_cancel(engine, cred, id, &text), TP_STATUS_CONFLICT, "illegal_transition");

    /* Denied calls are audited; an unknown job is not found; wait without a known credential is refused. */
    int denied = atomic_load(&log.denied);
    CHECK_STATUS(tp_engine_get_job(engine, "ApiKey tp_000000000000_nope", id, &text), TP_STATUS_UNAUTHORIZED,
                 NULL);
    CHECK(atomic_load(&log.denied) == denied + 1);
    const char *unknown = "018f0000-0000-7000-8000-000000000000";
    CHECK_STATUS(tp_engine_get_job(engine, cred, unknown, &text), TP_STATUS_NOT_FOUND, NULL);
    CHECK_STATUS(tp_engine_get_job(engine, cred, "not-a-uuid", &text), TP_STATUS_NOT_FOUND, "not_found");
    CHECK_STATUS(tp_engine_wait(engine, unknown, 0, &text), TP_STATUS_UNAUTHORIZED, NULL);
    CHECK_STATUS(tp_engine_wait_as(engine, cred, unknown, 0, &text), TP_STATUS_NOT_FOUND, NULL);
    CHECK_STATUS(tp_engine_export_data(engine, cred, "{\"study\": \"S1\", \"datasets\": [\"NOPE\"], \"format\": \"csv\"}",
                                       &text),
                 TP_STATUS_NOT_FOUND, NULL);
    CHECK_STATUS(tp_engine_export_data(engine, cred, "{\"study\": \"S1\", \"datasets\": [\"DM\"], \"format\": \"nope\"}",
                                       &text),
                 TP_STATUS_NOT_FOUND, NULL);

    /* A callback that refuses fails the operation (fail-closed). */
    atomic_store(&log.refuse, 1);
    CHECK_STATUS(tp_engine_get_job(engine, cred, id, &text), TP_STATUS_SERVER, "audit_failed");
    atomic_store(&log.refuse, 0);
    CHECK_OK(tp_engine_get_job(engine, cred, id, &text));
    tp_string_free(text);

    /* Freeing stops the workers and frees the callback's userdata once. */
    tp_engine_free(engine);
    CHECK(atomic_load(&freed_logs) == 1);
    tp_engine_free(NULL);

    /* Reopening: the settings are only checked; the jobs are there, the in-memory datasets are not. */
    engine = NULL;
    CHECK_STATUS(tp_engine_open(home, "{\"org\": ", &engine), TP_STATUS_VALIDATION, "invalid_request");
    CHECK(engine == NULL);
    CHECK_OK(tp_engine_open(home, NULL, &engine));
    CHECK_STATUS(tp_engine_initial_api_key(engine, &text), TP_STATUS_NOT_FOUND, "no_initial_key");
    CHECK_OK(tp_engine_list_jobs(engine, cred, "{\"status\": \"succeeded\"}", &text));
    CHECK(strstr(s_(text), "\"total\":6") != NULL);
    tp_string_free(text);
    CHECK_OK(tp_engine_wait_as(engine, cred, id2, TP_WAIT_FOREVER, &text));
    CHECK(strcmp(json_str(text, "state", state, sizeof state), "succeeded") == 0);
    tp_string_free(text);
    CHECK_STATUS(tp_engine_export_data(engine, cred, "{\"study\": \"S1\", \"datasets\": [\"DM\"], \"format\": \"csv\"}",
                                       &text),
                 TP_STATUS_NOT_FOUND, NULL);
    tp_engine_free(engine);

    /* A directory that is not a home needs settings. */
    engine = NULL;
    at(path, sizeof path, "not-a-home");
    CHECK_STATUS(tp_engine_open(path, NULL, &engine), TP_STATUS_NOT_FOUND, "not_a_home");
    CHECK(engine == NULL);
    CHECK_STATUS(tp_engine_open(path, "{\"orgg\": \"x\"}", &engine), TP_STATUS_VALIDATION, "invalid_request");
    CHECK_STATUS(tp_engine_open(path, "[1]", &engine), TP_STATUS_VALIDATION, "invalid_request");
}

/* Without workers a job stays queued: wait returns it at the timeout; then it is cancelled. */
static void queued_jobs(void) {
    char home[1200], cred[256], id[64], state[32];
    char *text = NULL, *job = NULL;
    at(home, sizeof home, "home-no-workers");
    tp_engine *engine = NULL;
    CHECK_OK(tp_engine_open(home, "{\"workers\": 0}", &engine));
    if (engine == NULL) {
        return;
    }
    CHECK_OK(tp_engine_initial_api_key(engine, &text));
    snprintf(cred, sizeof cred, "ApiKey %s", text ? text : "");
    tp_string_free(text);
    struct ArrowArrayStream stream;
    demo_stream(&stream, -1, NULL);
    CHECK_OK(tp_engine_add_dataset(engine, "S1", "DM", &stream, NULL));
    CHECK_OK(tp_engine_export_data(engine, cred, "{\"study\": \"S1\", \"datasets\": [\"DM\"], \"format\": \"csv\"}",
                                   &job));
    json_str(job, "id", id, sizeof id);
    tp_string_free(job);
    CHECK_OK(tp_engine_wait(engine, id, 50, &job));
    CHECK(strcmp(json_str(job, "state", state, sizeof state), "queued") == 0);
    tp_string_free(job);
    CHECK_OK(tp_engine_wait_as(engine, cred, id, 0, &job));
    CHECK(strcmp(json_str(job, "state", state, sizeof state), "queued") == 0);
    tp_string_free(job);
    char path[1200];
    at(path, sizeof path, "never.csv");
    CHECK_STATUS(tp_engine_download(engine, cred, id, path), TP_STATUS_CONFLICT, "job_not_succeeded");
    CHECK_OK(tp_engine_cancel(engine, cred, id, &job));
    CHECK(strcmp(json_str(job, "state", state, sizeof state), "cancelled") == 0);
    tp_string_free(job);
    tp_engine_free(engine);
}

/* tp_convert is `trialport convert`. */
static void convert(void) {
    char in[1200], out[1200], back[1200];
    size_t size = 0;
    at(in, sizeof in, "dm-in.csv");
    at(out, sizeof out, "dm-out.xpt");
    at(back, sizeof back, "dm-back.csv");
    CHECK(write_file(in, DEMO_CSV) == 0);
    CHECK_OK(tp_convert(in, out, "{\"dataset\": \"DM\", \"label\": \"Demographics\"}"));
    char *xpt = read_file(out, &size);
    check_starts(xpt, size, "HEADER RECORD*******LIBRARY HEADER RECORD!!!!!!!", 48);
    CHECK(xpt != NULL && size > 400 && contains(xpt, size, "Demographics"));
    free(xpt);
    CHECK_STATUS(tp_convert(in, out, NULL), TP_STATUS_CONFLICT, "artifact_exists");
    CHECK_OK(tp_convert(in, out, "{\"to\": \"xpt\", \"overwrite\": true, \"dataset\": \"DM\"}"));
    CHECK_OK(tp_convert(out, back, NULL));
    char *csv = read_file(back, &size);
    CHECK(csv != NULL && strncmp(csv, "USUBJID,AGE,SEX\n", 16) == 0 && strstr(s_(csv), "S1-003") != NULL);
    free(csv);
    at(out, sizeof out, "dm.parquet");
    CHECK_OK(tp_convert(in, out, NULL));
    char *pq = read_file(out, &size);
    check_starts(pq, size, "PAR1", 4);
    free(pq);

    at(out, sizeof out, "dm.unknown");
    CHECK_STATUS(tp_convert(in, out, NULL), TP_STATUS_VALIDATION, "unknown_output_format");
    at(out, sizeof out, "x.csv");
    CHECK_STATUS(tp_convert(in, out, "{\"options\": {\"no_such_option\": \"1\"}}"), TP_STATUS_VALIDATION,
                 "unknown_option");
    CHECK_STATUS(tp_convert(in, out, "{\"format\": \"nope\"}"), TP_STATUS_NOT_FOUND, NULL);
    CHECK_STATUS(tp_convert(in, out, "{not json"), TP_STATUS_VALIDATION, "invalid_request");
    at(in, sizeof in, "missing.csv");
    CHECK_STATUS(tp_convert(in, out, NULL), TP_STATUS_NOT_FOUND, NULL);
    CHECK(read_file(out, NULL) == NULL);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s WORKDIR\n", argv[0]);
        return 2;
    }
    snprintf(work, sizeof work, "%s", argv[1]);
    const char *version = tp_version();
    CHECK(version != NULL && strchr(version, '.') != NULL);
    CHECK(tp_last_error() == NULL);
    flow();
    queued_jobs();
    convert();
    if (tp_failures > 0) {
        fprintf(stderr, "test_flow: %d checks failed\n", tp_failures);
        return 1;
    }
    printf("test_flow: all checks passed (libtrialport %s)\n", version);
    return 0;
}
