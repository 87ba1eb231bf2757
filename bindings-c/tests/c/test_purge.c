/* tp_engine_purge: an admin gets the summary JSON with its three counts (nothing is due on a new home), the call is
 * audited; a bad credential is EXP003 with the standard error JSON and the output untouched; NULL arguments are
 * refused. Usage: test_purge WORKDIR (an empty directory). */
#define _POSIX_C_SOURCE 200809L
#include <stdatomic.h>

#include "tp_test.h"

static atomic_int purges = 0;
static atomic_int denied = 0;

static int on_event(void *userdata, const char *event_json) {
    (void)userdata;
    if (strstr(s_(event_json), "\"action\":\"purge\"") != NULL) {
        atomic_fetch_add(&purges, 1);
        if (strstr(event_json, "\"outcome\":\"denied\"") != NULL) {
            atomic_fetch_add(&denied, 1);
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s WORKDIR\n", argv[0]);
        return 2;
    }
    char home[1200], cred[256], id[64], state[32];
    path_join(home, sizeof home, argv[1], "home");
    tp_engine *engine = NULL;
    CHECK_OK(tp_engine_open(home, "{\"org\": \"acme\", \"workers\": 1, \"retention_days\": 30}", &engine));
    if (engine == NULL) {
        return 1;
    }
    char *key = NULL;
    CHECK_OK(tp_engine_initial_api_key(engine, &key));
    snprintf(cred, sizeof cred, "ApiKey %s", s_(key));
    tp_string_free(key);
    CHECK_OK(tp_engine_add_audit_callback(engine, on_event, NULL, NULL));

    /* A succeeded job, far from its 30 days. */
    struct ArrowArrayStream stream;
    int released = 0;
    demo_stream(&stream, -1, &released);
    CHECK_OK(tp_engine_add_dataset(engine, "S1", "DM", &stream, NULL));
    char *job = NULL;
    CHECK_OK(tp_engine_export_data(engine, cred, "{\"study\": \"S1\", \"datasets\": [\"DM\"], \"format\": \"csv\"}",
                                   &job));
    json_str(job, "id", id, sizeof id);
    tp_string_free(job);
    job = NULL;
    CHECK_OK(tp_engine_wait(engine, id, TP_WAIT_FOREVER, &job));
    CHECK(strcmp(json_str(job, "state", state, sizeof state), "succeeded") == 0);
    tp_string_free(job);
    job = NULL;

    /* An admin purges: the summary, every count 0; the job is untouched. */
    char *summary = NULL;
    CHECK_OK(tp_engine_purge(engine, cred, &summary));
    CHECK(summary != NULL && strcmp(summary, "{\"jobs_expired\":0,\"artifacts_deleted\":0,\"bytes_freed\":0}") == 0);
    if (summary != NULL) {
        printf("purge: %s\n", summary);
    }
    tp_string_free(summary);
    CHECK_OK(tp_engine_get_job(engine, cred, id, &job));
    CHECK(strcmp(json_str(job, "state", state, sizeof state), "succeeded") == 0);
    tp_string_free(job);
    CHECK(atomic_load(&purges) == 1 && atomic_load(&denied) == 0);

    /* A bad credential: EXP003, the standard error JSON, the output untouched, the refusal audited. */
    static char untouched[] = "untouched";
    char *out = untouched;
    CHECK_STATUS(tp_engine_purge(engine, "ApiKey tp_nope", &out), TP_STATUS_UNAUTHORIZED, NULL);
    const char *last = tp_last_error();
    CHECK(strstr(s_(last), "{\"error\":{\"code\":\"EXP003\"") == s_(last));
    CHECK(out == untouched);
    CHECK_STATUS(tp_engine_purge(engine, "", &out), TP_STATUS_UNAUTHORIZED, NULL);
    CHECK(out == untouched);
    CHECK(atomic_load(&purges) == 3 && atomic_load(&denied) == 2);

    /* NULL arguments. */
    CHECK_STATUS(tp_engine_purge(NULL, cred, &out), TP_STATUS_NULL_ARGUMENT, "null_argument");
    CHECK(strstr(s_(tp_last_error()), "\"field\":\"engine\"") != NULL);
    CHECK_STATUS(tp_engine_purge(engine, NULL, &out), TP_STATUS_NULL_ARGUMENT, "null_argument");
    CHECK(strstr(s_(tp_last_error()), "\"field\":\"credential\"") != NULL);
    CHECK_STATUS(tp_engine_purge(engine, cred, NULL), TP_STATUS_NULL_ARGUMENT, "null_argument");
    CHECK(strstr(s_(tp_last_error()), "\"field\":\"result_json\"") != NULL);
    CHECK(out == untouched);

    tp_engine_free(engine);
    if (tp_failures > 0) {
        fprintf(stderr, "test_purge: %d checks failed\n", tp_failures);
        return 1;
    }
    printf("test_purge: all checks passed\n");
    return 0;
}
