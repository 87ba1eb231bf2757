/* Exports every CSV file of a study folder (SOURCE/STUDY/<DATASET>.csv) to SAS XPORT files (OUTDIR/<dataset>.xpt)
 * with the trialport engine: one audited job, the files `trialport export data --format xpt` writes.
 * Build: cc -std=c11 export_csv_dir.c $(pkg-config --cflags --libs trialport) -o export_csv_dir
 * Usage: export_csv_dir HOME SOURCE STUDY OUTDIR   (HOME is created on first use, reading from SOURCE; the
 * credential is TRIALPORT_CREDENTIAL, or the first admin key of a home created now) */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <trialport.h>

static int fail(const char *what) {
    fprintf(stderr, "%s failed: %s\n", what, tp_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 5) return fprintf(stderr, "usage: %s HOME SOURCE STUDY OUTDIR\n", argv[0]), 2;
    char config[4200], cred[512], request[8192], dir[4200], names[100][64], id[37] = "", path[4400];
    char *text = NULL, *job = NULL;
    const char *env = getenv("TRIALPORT_CREDENTIAL");
    tp_engine *engine = NULL;
    snprintf(config, sizeof config, "{\"source\": \"%s\"}", argv[2]); /* a path without quotes or backslashes */
    if (tp_engine_open(argv[1], config, &engine) != TP_STATUS_OK) return fail("open");
    if (tp_engine_initial_api_key(engine, &text) == TP_STATUS_OK) snprintf(cred, sizeof cred, "ApiKey %s", text);
    else snprintf(cred, sizeof cred, "%s", env ? env : "");
    tp_string_free(text);

    int n = 0, len = snprintf(request, sizeof request, "{\"study\": \"%s\", \"format\": \"xpt\", \"datasets\": [", argv[3]);
    snprintf(dir, sizeof dir, "%s/%s", argv[2], argv[3]);
    DIR *d = opendir(dir);
    for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL && n < 100;) {
        size_t l = strlen(e->d_name);
        if (l < 5 || l > 60 || strcmp(e->d_name + l - 4, ".csv") != 0) continue;
        for (size_t i = 0; i < l - 4; i++) names[n][i] = (char)toupper((unsigned char)e->d_name[i]);
        names[n][l - 4] = '\0';
        len += snprintf(request + len, sizeof request - (size_t)len, "%s\"%s\"", n ? ", " : "", names[n]);
        n++;
    }
    if (d != NULL) closedir(d);
    snprintf(request + len, sizeof request - (size_t)len, "]}");

    if (tp_engine_export_data(engine, cred, request, &job) != TP_STATUS_OK) return fail("export");
    const char *at = strstr(job, "\"id\":\"");
    if (at != NULL) memcpy(id, at + 6, 36);
    tp_string_free(job);
    if (tp_engine_wait(engine, id, TP_WAIT_FOREVER, &job) != TP_STATUS_OK) return fail("wait");
    int ok = strstr(job, "\"state\":\"succeeded\"") != NULL;
    if (!ok) fprintf(stderr, "the job did not succeed: %s\n", job);
    tp_string_free(job);
    for (int i = 0; ok && i < n; i++) {
        char artifact[80];
        for (size_t j = 0; j <= strlen(names[i]); j++) artifact[j] = (char)tolower((unsigned char)names[i][j]);
        strcat(artifact, ".xpt");
        snprintf(path, sizeof path, "%s/%s", argv[4], artifact);
        if (tp_engine_download_artifact(engine, cred, id, artifact, path) != TP_STATUS_OK) return fail("download");
        printf("%s\n", path);
    }
    tp_engine_free(engine);
    return ok ? 0 : 1;
}
