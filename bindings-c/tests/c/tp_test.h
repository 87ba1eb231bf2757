/* Helpers of the C tests: checks, files, JSON members, and a small Arrow C stream producer written from the Arrow C
 * data interface specification (no Arrow library involved). */
#ifndef TP_TEST_H
#define TP_TEST_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trialport.h"

static _Atomic int tp_failures = 0;

#define CHECK(cond)                                                                                  \
    do {                                                                                             \
        if (!(cond)) {                                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);                 \
            const char *last_ = tp_last_error();                                                     \
            fprintf(stderr, "  last error: %s\n", last_ ? last_ : "(none)");                         \
            tp_failures++;                                                                           \
        }                                                                                            \
    } while (0)

/* The call returns `status`, and on failure the last error names `reason`. */
#define CHECK_STATUS(call, status, reason)                                                           \
    do {                                                                                             \
        tp_status got_ = (call);                                                                     \
        if (got_ != (status)) {                                                                      \
            fprintf(stderr, "%s:%d: %s returned %d, expected %d\n", __FILE__, __LINE__, #call,        \
                    (int)got_, (int)(status));                                                       \
            const char *last_ = tp_last_error();                                                     \
            fprintf(stderr, "  last error: %s\n", last_ ? last_ : "(none)");                         \
            tp_failures++;                                                                           \
        } else if ((status) != TP_STATUS_OK) {                                                       \
            check_reason(__FILE__, __LINE__, (reason));                                              \
        }                                                                                            \
    } while (0)

#define CHECK_OK(call) CHECK_STATUS(call, TP_STATUS_OK, NULL)

/* The last error's details.reason is `reason` (when not NULL), and the JSON has the standard members. */
static inline void check_reason(const char *file, int line, const char *reason) {
    const char *last = tp_last_error();
    if (last == NULL || strstr(last, "{\"error\":{\"code\":\"EXP00") != last || !strstr(last, "\"timestamp\":") ||
        !strstr(last, "\"request_id\":") || !strstr(last, "\"message\":")) {
        fprintf(stderr, "%s:%d: not a standard error JSON: %s\n", file, line, last ? last : "(none)");
        tp_failures++;
        return;
    }
    if (reason != NULL) {
        char want[128];
        snprintf(want, sizeof want, "\"reason\":\"%s\"", reason);
        if (!strstr(last, want)) {
            fprintf(stderr, "%s:%d: expected reason %s in %s\n", file, line, reason, last);
            tp_failures++;
        }
    }
}

/* A string to search, "" for NULL (a failed call leaves its output NULL). */
static inline const char *s_(const char *p) {
    return p ? p : "";
}

/* The string value of the first member `key` of a compact JSON text, copied into `out` ("" when absent). */
static inline const char *json_str(const char *json, const char *key, char *out, size_t n) {
    char pattern[128];
    snprintf(pattern, sizeof pattern, "\"%s\":\"", key);
    out[0] = '\0';
    const char *at = json ? strstr(json, pattern) : NULL;
    if (at == NULL) {
        return out;
    }
    at += strlen(pattern);
    size_t i = 0;
    while (at[i] != '\0' && at[i] != '"' && i + 1 < n) {
        out[i] = at[i];
        i++;
    }
    out[i] = '\0';
    return out;
}

/* The whole content of a file (NUL-terminated; free it), its size in *size; NULL when unreadable. */
static inline char *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap + 1);
    size_t got;
    while (buf != NULL && (got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            cap *= 2;
            char *more = realloc(buf, cap + 1);
            if (more == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = more;
        }
    }
    fclose(f);
    if (buf != NULL) {
        buf[len] = '\0';
    }
    if (size != NULL) {
        *size = len;
    }
    return buf;
}

static inline int write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        return -1;
    }
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

static inline void path_join(char *out, size_t n, const char *dir, const char *name) {
    snprintf(out, n, "%s/%s", dir, name);
}

/* ------------------------------------------------------------------------------------------------------------
 * A producer of the Arrow C stream interface: the demographics table below, in two batches, with a NULL AGE.
 *   USUBJID (utf8) | AGE (int64) | SEX (utf8)
 * ------------------------------------------------------------------------------------------------------------ */

typedef struct {
    const char *usubjid;
    int64_t age; /* -1: NULL */
    const char *sex;
} demo_row;

static const demo_row DEMO_ROWS[] = {{"S1-001", 34, "F"}, {"S1-002", -1, "M"}, {"S1-003", 61, "F"}};
/* The rows of each batch: [0, 2) and [2, 3). */
static const int DEMO_BATCH_START[] = {0, 2, 3};
#define DEMO_BATCHES 2

/* What the CSV export of that table is. */
#define DEMO_CSV "USUBJID,AGE,SEX\nS1-001,34,F\nS1-002,,M\nS1-003,61,F\n"

typedef struct {
    int next_batch;
    int fail_at_batch; /* -1: never */
    int *released;     /* incremented by release */
} demo_stream_state;

typedef struct {
    void *memory[3];
    const void *buffers[3];
    struct ArrowArray **children;
    int64_t n_children;
} demo_array_private;

static inline void demo_release_array(struct ArrowArray *array) {
    demo_array_private *p = array->private_data;
    for (int64_t i = 0; i < p->n_children; i++) {
        struct ArrowArray *child = p->children[i];
        if (child->release != NULL) {
            child->release(child);
        }
        free(child);
    }
    free(p->children);
    for (int i = 0; i < 3; i++) {
        free(p->memory[i]);
    }
    free(p);
    array->release = NULL;
}

static inline struct ArrowArray *demo_new_array(int64_t length, int64_t n_buffers, int64_t n_children) {
    struct ArrowArray *a = calloc(1, sizeof *a);
    demo_array_private *p = calloc(1, sizeof *p);
    a->length = length;
    a->n_buffers = n_buffers;
    a->n_children = n_children;
    a->buffers = p->buffers;
    if (n_children > 0) {
        p->children = calloc((size_t)n_children, sizeof *p->children);
        p->n_children = n_children;
    }
    a->children = p->children;
    a->release = demo_release_array;
    a->private_data = p;
    return a;
}

static inline struct ArrowArray *demo_strings(int start, int end, int column) {
    int64_t n = end - start;
    struct ArrowArray *a = demo_new_array(n, 3, 0);
    demo_array_private *p = a->private_data;
    int32_t *offsets = malloc(sizeof(int32_t) * (size_t)(n + 1));
    size_t total = 0;
    for (int i = start; i < end; i++) {
        total += strlen(column == 0 ? DEMO_ROWS[i].usubjid : DEMO_ROWS[i].sex);
    }
    char *data = malloc(total + 1);
    offsets[0] = 0;
    for (int i = start; i < end; i++) {
        const char *s = column == 0 ? DEMO_ROWS[i].usubjid : DEMO_ROWS[i].sex;
        memcpy(data + offsets[i - start], s, strlen(s));
        offsets[i - start + 1] = offsets[i - start] + (int32_t)strlen(s);
    }
    p->memory[1] = offsets;
    p->memory[2] = data;
    p->buffers[0] = NULL;
    p->buffers[1] = offsets;
    p->buffers[2] = data;
    return a;
}

static inline struct ArrowArray *demo_ages(int start, int end) {
    int64_t n = end - start;
    struct ArrowArray *a = demo_new_array(n, 2, 0);
    demo_array_private *p = a->private_data;
    uint8_t *validity = calloc(1, 8);
    int64_t *values = calloc((size_t)n, sizeof(int64_t));
    for (int i = start; i < end; i++) {
        if (DEMO_ROWS[i].age >= 0) {
            validity[(i - start) / 8] |= (uint8_t)(1u << ((i - start) % 8));
            values[i - start] = DEMO_ROWS[i].age;
        } else {
            a->null_count++;
        }
    }
    p->memory[0] = validity;
    p->memory[1] = values;
    p->buffers[0] = validity;
    p->buffers[1] = values;
    return a;
}

static inline void demo_release_schema(struct ArrowSchema *schema) {
    for (int64_t i = 0; i < schema->n_children; i++) {
        free(schema->children[i]);
    }
    free(schema->children);
    schema->release = NULL;
}

static inline void demo_release_child_schema(struct ArrowSchema *schema) {
    schema->release = NULL;
}

static inline int demo_get_schema(struct ArrowArrayStream *stream, struct ArrowSchema *out) {
    (void)stream;
    static const char *names[] = {"USUBJID", "AGE", "SEX"};
    static const char *formats[] = {"u", "l", "u"};
    memset(out, 0, sizeof *out);
    out->format = "+s";
    out->name = "";
    out->n_children = 3;
    out->children = calloc(3, sizeof *out->children);
    for (int i = 0; i < 3; i++) {
        struct ArrowSchema *c = calloc(1, sizeof *c);
        c->format = formats[i];
        c->name = names[i];
        c->flags = ARROW_FLAG_NULLABLE;
        c->release = demo_release_child_schema;
        out->children[i] = c;
    }
    out->release = demo_release_schema;
    return 0;
}

static inline int demo_get_next(struct ArrowArrayStream *stream, struct ArrowArray *out) {
    demo_stream_state *s = stream->private_data;
    memset(out, 0, sizeof *out);
    if (s->next_batch == s->fail_at_batch) {
        return 5; /* EIO, without a message: get_last_error gives NULL */
    }
    if (s->next_batch >= DEMO_BATCHES) {
        out->release = NULL; /* the end */
        return 0;
    }
    int start = DEMO_BATCH_START[s->next_batch], end = DEMO_BATCH_START[s->next_batch + 1];
    s->next_batch++;
    struct ArrowArray *top = demo_new_array(end - start, 1, 3);
    demo_array_private *p = top->private_data;
    p->buffers[0] = NULL;
    p->children[0] = demo_strings(start, end, 0);
    p->children[1] = demo_ages(start, end);
    p->children[2] = demo_strings(start, end, 2);
    *out = *top; /* moved: `out` owns the private data now */
    free(top);
    return 0;
}

static inline const char *demo_get_last_error(struct ArrowArrayStream *stream) {
    (void)stream;
    return NULL;
}

static inline void demo_release_stream(struct ArrowArrayStream *stream) {
    demo_stream_state *s = stream->private_data;
    if (s->released != NULL) {
        (*s->released)++;
    }
    free(s);
    stream->release = NULL;
}

/* Fills `stream` with the demographics table; `*released` counts the stream's releases. */
static inline void demo_stream(struct ArrowArrayStream *stream, int fail_at_batch, int *released) {
    demo_stream_state *s = calloc(1, sizeof *s);
    s->fail_at_batch = fail_at_batch;
    s->released = released;
    stream->get_schema = demo_get_schema;
    stream->get_next = demo_get_next;
    stream->get_last_error = demo_get_last_error;
    stream->release = demo_release_stream;
    stream->private_data = s;
}

#endif /* TP_TEST_H */
