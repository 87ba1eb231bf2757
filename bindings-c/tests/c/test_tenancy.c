/* Studies belong to organizations (DESIGN.md §12), through the C API: every tp_* operation of a principal of
 * another organization on an `acme` study or job answers exactly as one on a study or job that does not exist: the
 * same status and error JSON (code, message, field, details.reason and every other member; time and request id
 * aside, the name used replaced), and the same audit event (from an audit callback; sequence, ids, time and
 * hashes aside). The CLI's twin is cli/tests/tenancy.rs.
 *
 * Usage: test_tenancy WORKDIR, prepared by bindings-c/test.sh (prepare_tenancy): WORKDIR/home made by
 * `trialport init --org acme` over studies S1-S3 with an HS256 secret; WORKDIR/admin.cred (acme's admin API key),
 * WORKDIR/globex.cred (a bearer token of organization globex, roles admin, studies *), WORKDIR/job1.id (acme's
 * succeeded export of S1), WORKDIR/job3.id (acme's succeeded export of S3, whose binding was then removed); S4 is
 * a study folder added to the source after init, bound to no organization. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <unistd.h>

#include "tp_test.h"

static const char *NOBODY = "0190c1d2-0000-7000-8000-000000000000";

/* Every audit event the engine recorded, copied by the callback. */
typedef struct {
    pthread_mutex_t lock;
    char **events;
    size_t len, cap;
} event_log;

static int on_event(void *userdata, const char *event_json) {
    event_log *log = userdata;
    pthread_mutex_lock(&log->lock);
    if (log->len == log->cap) {
        size_t cap = log->cap ? log->cap * 2 : 64;
        char **more = realloc(log->events, cap * sizeof *more);
        if (more == NULL) {
            pthread_mutex_unlock(&log->lock);
            return 1;
        }
        log->events = more;
        log->cap = cap;
    }
    log->events[log->len++] = strdup(event_json);
    pthread_mutex_unlock(&log->lock);
    return 0;
}

/* `text` with each `from` replaced by `to` (free it). */
static char *replace_all(const char *text, const char *from, const char *to) {
    size_t n = 0, fl = strlen(from), tl = strlen(to);
    for (const char *p = strstr(text, from); p != NULL; p = strstr(p + fl, from)) {
        n++;
    }
    char *out = malloc(strlen(text) + n * tl + 1), *w = out;
    const char *r = text;
    for (const char *p = strstr(r, from); p != NULL; p = strstr(r, from)) {
        memcpy(w, r, (size_t)(p - r));
        w += p - r;
        memcpy(w, to, tl);
        w += tl;
        r = p + fl;
    }
    strcpy(w, r);
    return out;
}

/* Empties, in place, the value of every member `key` of a compact JSON text: a string becomes "", a number or
 * literal disappears (`"seq":` stays). The values emptied hold no escaped quote. */
static void blank_member(char *json, const char *key) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    for (char *at = strstr(json, pattern); at != NULL; at = strstr(at, pattern)) {
        at += strlen(pattern);
        char *end = at;
        if (*at == '"') {
            at++;
            end = strchr(at, '"');
            if (end == NULL) {
                return;
            }
        } else {
            while (*end != '\0' && *end != ',' && *end != '}') {
                end++;
            }
        }
        memmove(at, end, strlen(end) + 1);
    }
}

/* A JSON text with `name` made NAME and the members that differ between any two calls emptied (free it). */
static char *normalized(const char *json, const char *name) {
    static const char *volatile_members[] = {"seq", "event_id", "timestamp", "request_id", "prev_hash", "hash"};
    char *out = replace_all(json, name, "NAME");
    for (size_t i = 0; i < sizeof volatile_members / sizeof volatile_members[0]; i++) {
        blank_member(out, volatile_members[i]);
    }
    return out;
}

/* The audit event (a copy: free it) with request id `request_id`; NULL unless exactly one. */
static char *event_of(event_log *log, const char *request_id) {
    char want[128];
    snprintf(want, sizeof want, "\"request_id\":\"%s\"", request_id);
    char *found = NULL;
    int count = 0;
    pthread_mutex_lock(&log->lock);
    for (size_t i = 0; i < log->len; i++) {
        if (strstr(log->events[i], want) != NULL) {
            count++;
            free(found);
            found = strdup(log->events[i]);
        }
    }
    pthread_mutex_unlock(&log->lock);
    if (count != 1) {
        fprintf(stderr, "  %d audit events for %s\n", count, request_id);
        free(found);
        return NULL;
    }
    return found;
}

/* One operation on a study or job named by `name`, as `cred`: its status, and the output to free in *out. */
typedef tp_status (*op_fn)(tp_engine *engine, const char *cred, const char *name, const char *dir, char **out);

static tp_status op_export_data(tp_engine *e, const char *cred, const char *name, const char *dir, char **out) {
    (void)dir;
    char req[256];
    snprintf(req, sizeof req, "{\"study\": \"%s\", \"datasets\": [\"DM\"], \"format\": \"csv\"}", name);
    return tp_engine_export_data(e, cred, req, out);
}

static tp_status op_export_report(tp_engine *e, const char *cred, const char *name, const char *dir, char **out) {
    (void)dir;
    char req[512];
    snprintf(req, sizeof req,
             "{\"report\": {\"study\": \"%s\", \"title\": \"Listing\", \"sections\": [{\"type\": \"table\", "
             "\"dataset\": \"DM\"}]}, \"format\": \"html\"}",
             name);
    return tp_engine_export_report(e, cred, req, out);
}

static tp_status op_export_dashboard(tp_engine *e, const char *cred, const char *name, const char *dir,
                                     char **out) {
    (void)dir;
    char req[512];
    snprintf(req, sizeof req,
             "{\"dashboard\": {\"study\": \"%s\", \"title\": \"Enrolment\", \"tiles\": [{\"label\": \"Subjects\", "
             "\"dataset\": \"DM\", \"measure\": \"count\"}]}, \"format\": \"json\"}",
             name);
    return tp_engine_export_dashboard(e, cred, req, out);
}

static tp_status op_bulk_export(tp_engine *e, const char *cred, const char *name, const char *dir, char **out) {
    (void)dir;
    char req[256];
    snprintf(req, sizeof req, "{\"study\": \"%s\", \"format\": \"csv\"}", name);
    return tp_engine_bulk_export(e, cred, req, out);
}

static tp_status op_list_jobs(tp_engine *e, const char *cred, const char *name, const char *dir, char **out) {
    (void)dir;
    char req[256];
    snprintf(req, sizeof req, "{\"study\": \"%s\"}", name);
    return tp_engine_list_jobs(e, cred, req, out);
}

static tp_status op_get_job(tp_engine *e, const char *cred, const char *name, const char *dir, char **out) {
    (void)dir;
    return tp_engine_get_job(e, cred, name, out);
}

static tp_status op_wait_as(tp_engine *e, const char *cred, const char *name, const char *dir, char **out) {
    (void)dir;
    return tp_engine_wait_as(e, cred, name, 0, out);
}

static tp_status op_cancel(tp_engine *e, const char *cred, const char *name, const char *dir, char **out) {
    (void)dir;
    return tp_engine_cancel(e, cred, name, out);
}

static tp_status op_download(tp_engine *e, const char *cred, const char *name, const char *dir, char **out) {
    (void)out;
    char path[1200];
    path_join(path, sizeof path, dir, "never.csv");
    return tp_engine_download(e, cred, name, path);
}

static tp_status op_download_artifact(tp_engine *e, const char *cred, const char *name, const char *dir,
                                      char **out) {
    (void)out;
    char path[1200];
    path_join(path, sizeof path, dir, "never.csv");
    return tp_engine_download_artifact(e, cred, name, "dm.csv", path);
}

static tp_status op_download_manifest(tp_engine *e, const char *cred, const char *name, const char *dir,
                                      char **out) {
    (void)out;
    char path[1200];
    path_join(path, sizeof path, dir, "never.json");
    return tp_engine_download_artifact(e, cred, name, "manifest.json", path);
}

typedef struct {
    const char *what;
    op_fn fn;
} op;

static const op STUDY_OPS[] = {
    {"export_data", op_export_data},   {"export_report", op_export_report}, {"export_dashboard", op_export_dashboard},
    {"bulk_export", op_bulk_export},   {"list_jobs", op_list_jobs},
};

static const op JOB_OPS[] = {
    {"get_job", op_get_job},
    {"wait_as", op_wait_as},
    {"cancel", op_cancel},
    {"download", op_download},
    {"download_artifact", op_download_artifact},
    {"download_artifact manifest", op_download_manifest},
};

/* The failed call's status, its error JSON and its audit event (copies: free them). */
typedef struct {
    tp_status status;
    char *error;
    char *event;
} refused;

static refused refuse(tp_engine *e, event_log *log, const op *o, const char *cred, const char *name,
                      const char *dir) {
    refused r = {TP_STATUS_OK, NULL, NULL};
    char *out = NULL;
    r.status = o->fn(e, cred, name, dir, &out);
    if (r.status == TP_STATUS_OK) {
        fprintf(stderr, "%s of %s succeeded: %s\n", o->what, name, s_(out));
        tp_string_free(out);
        tp_failures++;
        return r;
    }
    r.error = strdup(s_(tp_last_error()));
    char request_id[128];
    json_str(r.error, "request_id", request_id, sizeof request_id);
    r.event = event_of(log, request_id);
    return r;
}

/* `o` on `foreign` and on `unknown` as `cred` fails alike: the same status, error and audit event; the error is
 * EXP001 `not_found` with field `field` (NULL: no field checked). */
static void same_refusal(tp_engine *e, event_log *log, const op *o, const char *cred, const char *foreign,
                         const char *unknown, const char *dir, const char *field) {
    refused f = refuse(e, log, o, cred, foreign, dir);
    refused u = refuse(e, log, o, cred, unknown, dir);
    if (f.error == NULL || u.error == NULL) {
        goto done;
    }
    char fv[512], uv[512];
    CHECK(f.status == u.status);
    CHECK(f.status == TP_STATUS_NOT_FOUND);
    const char *members[] = {"code", "reason", "field"};
    for (size_t i = 0; i < sizeof members / sizeof members[0]; i++) {
        json_str(f.error, members[i], fv, sizeof fv);
        json_str(u.error, members[i], uv, sizeof uv);
        if (strcmp(fv, uv) != 0) {
            fprintf(stderr, "%s: %s differs: %s (%s) vs %s (%s)\n", o->what, members[i], fv, foreign, uv, unknown);
            tp_failures++;
        }
    }
    json_str(f.error, "code", fv, sizeof fv);
    CHECK(strcmp(fv, "EXP001") == 0);
    json_str(f.error, "reason", fv, sizeof fv);
    CHECK(strcmp(fv, "not_found") == 0);
    if (field != NULL) {
        json_str(f.error, "field", fv, sizeof fv);
        CHECK(strcmp(fv, field) == 0);
    }
    /* The message, names replaced, and then the whole error object. */
    char *fm = replace_all(json_str(f.error, "message", fv, sizeof fv), foreign, "NAME");
    char *um = replace_all(json_str(u.error, "message", uv, sizeof uv), unknown, "NAME");
    if (strcmp(fm, um) != 0) {
        fprintf(stderr, "%s: the messages differ: %s vs %s\n", o->what, fm, um);
        tp_failures++;
    }
    free(fm);
    free(um);
    char *fe = normalized(f.error, foreign), *ue = normalized(u.error, unknown);
    if (strcmp(fe, ue) != 0) {
        fprintf(stderr, "%s: the errors differ (%s vs %s):\n  %s\n  %s\n", o->what, foreign, unknown, fe, ue);
        tp_failures++;
    }
    free(fe);
    free(ue);
    if (f.event == NULL || u.event == NULL) {
        fprintf(stderr, "%s: no single audit event for a refusal (%s vs %s)\n", o->what, foreign, unknown);
        tp_failures++;
        goto done;
    }
    CHECK(strstr(f.event, "\"outcome\":\"success\"") == NULL);
    CHECK(strstr(f.event, "\"reason\":\"not_found\"") != NULL);
    char *fa = normalized(f.event, foreign), *ua = normalized(u.event, unknown);
    if (strcmp(fa, ua) != 0) {
        fprintf(stderr, "%s: the audit events differ (%s vs %s):\n  %s\n  %s\n", o->what, foreign, unknown, fa, ua);
        tp_failures++;
    }
    free(fa);
    free(ua);
done:
    free(f.error);
    free(f.event);
    free(u.error);
    free(u.event);
}

/* The first line of WORKDIR/name, into `out`. */
static int read_line(const char *dir, const char *name, char *out, size_t n) {
    char path[1200];
    path_join(path, sizeof path, dir, name);
    char *text = read_file(path, NULL);
    if (text == NULL) {
        fprintf(stderr, "cannot read %s (made by bindings-c/test.sh)\n", path);
        return -1;
    }
    text[strcspn(text, "\r\n")] = '\0';
    snprintf(out, n, "%s", text);
    free(text);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s WORKDIR\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    char home[1200], admin[512], globex[2048], job1[64], job3[64], state[32];
    path_join(home, sizeof home, dir, "home");
    if (read_line(dir, "admin.cred", admin, sizeof admin) || read_line(dir, "globex.cred", globex, sizeof globex) ||
        read_line(dir, "job1.id", job1, sizeof job1) || read_line(dir, "job3.id", job3, sizeof job3)) {
        return 2;
    }
    tp_engine *engine = NULL;
    CHECK_OK(tp_engine_open(home, NULL, &engine));
    if (engine == NULL) {
        return 1;
    }
    event_log log = {.events = NULL, .len = 0, .cap = 0};
    pthread_mutex_init(&log.lock, NULL);
    CHECK_OK(tp_engine_add_audit_callback(engine, on_event, &log, NULL));

    /* The owner's job, seen by its owner. */
    char *out = NULL;
    CHECK_OK(tp_engine_get_job(engine, admin, job1, &out));
    CHECK(strcmp(json_str(out, "state", state, sizeof state), "succeeded") == 0);
    tp_string_free(out);

    /* Study operations: globex on acme's S1, and acme on S4 (in the source, bound to no organization), answer as
     * on a study that does not exist; acme is served on S1. */
    for (size_t i = 0; i < sizeof STUDY_OPS / sizeof STUDY_OPS[0]; i++) {
        same_refusal(engine, &log, &STUDY_OPS[i], globex, "S1", "NOPE", dir, "study");
        same_refusal(engine, &log, &STUDY_OPS[i], admin, "S4", "NOPE", dir, "study");
        out = NULL;
        CHECK_OK(STUDY_OPS[i].fn(engine, admin, "S1", dir, &out));
        tp_string_free(out);
    }
    /* Job operations: globex on acme's job, and acme on its job of a study no longer bound, answer as on a job
     * that does not exist; no file is written. */
    for (size_t i = 0; i < sizeof JOB_OPS / sizeof JOB_OPS[0]; i++) {
        same_refusal(engine, &log, &JOB_OPS[i], globex, job1, NOBODY, dir, NULL);
        same_refusal(engine, &log, &JOB_OPS[i], admin, job3, NOBODY, dir, NULL);
    }
    char never[1200];
    path_join(never, sizeof never, dir, "never.csv");
    CHECK(access(never, F_OK) != 0);
    path_join(never, sizeof never, dir, "never.json");
    CHECK(access(never, F_OK) != 0);

    /* globex's listing holds none of acme's jobs; acme's holds its jobs of S1 only (S3 is no longer bound). */
    out = NULL;
    CHECK_OK(tp_engine_list_jobs(engine, globex, "{\"limit\": 100}", &out));
    CHECK(strstr(s_(out), "\"total\":0") != NULL);
    CHECK(strstr(s_(out), job1) == NULL);
    tp_string_free(out);
    out = NULL;
    CHECK_OK(tp_engine_list_jobs(engine, admin, "{\"limit\": 100}", &out));
    CHECK(strstr(s_(out), job1) != NULL);
    CHECK(strstr(s_(out), job3) == NULL);
    tp_string_free(out);
    /* The owner still sees its job after all that. */
    out = NULL;
    CHECK_OK(tp_engine_get_job(engine, admin, job1, &out));
    CHECK(strcmp(json_str(out, "state", state, sizeof state), "succeeded") == 0);
    tp_string_free(out);

    tp_engine_free(engine);
    for (size_t i = 0; i < log.len; i++) {
        free(log.events[i]);
    }
    free(log.events);
    pthread_mutex_destroy(&log.lock);
    if (tp_failures) {
        fprintf(stderr, "test_tenancy: %d check(s) failed\n", (int)tp_failures);
        return 1;
    }
    printf("test_tenancy: ok\n");
    return 0;
}
