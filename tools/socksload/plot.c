/*
 * plot.c - `socksload plot`: reads an --intervals file and has gnuplot draw three panels over
 * time (throughput, rate, latency p50/p99/max) into an SVG or PNG.
 *
 * The lines become a temporary tab-separated data file (mkstemp, removed after); gnuplot runs
 * by fork and exec, no shell, and reads its script on stdin. The script itself picks the
 * terminal and exits with PLOT_NO_TERMINAL when this gnuplot has none for the format.
 */
#include "socksload.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int
plot_format(const char *out, enum plot_fmt *fmt)
{
    size_t n = strlen(out);

    if (n > 4 && strcasecmp(out + n - 4, ".svg") == 0)
        *fmt = PLOT_SVG;
    else if (n > 4 && strcasecmp(out + n - 4, ".png") == 0)
        *fmt = PLOT_PNG;
    else
        return -EINVAL;
    return 0;
}

/* The value of "key": in an object's text: a number into *v, or null (NaN). -EINVAL when the
 * key is missing or its value is neither. */
static int
field(const char *line, const char *key, double *v)
{
    char pat[40];
    char *end;

    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = strstr(line, pat);
    if (!p)
        return -EINVAL;
    p += strlen(pat);
    if (strncmp(p, "null", 4) == 0) {
        *v = NAN;
        return 0;
    }
    *v = strtod(p, &end);
    if (end == p || (*end != ',' && *end != '}') || !isfinite(*v))
        return -EINVAL;
    return 0;
}

int
plot_row(const char *line, char *row, size_t rowlen, char *err, size_t errlen)
{
    static const char *const keys[] = {"t", "throughput", "rate", "p50_us", "p99_us", "max_us"};
    double v[6];
    const char *p = line;
    size_t n = strlen(line);

    while (*p == ' ' || *p == '\t')
        p++;
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
        n--;
    if (*p == '\0' || *p == '\n' || *p == '\r')
        return 0;
    if (*p != '{' || n == 0 || line[n - 1] != '}') {
        snprintf(err, errlen, "not a JSON object");
        return -EINVAL;
    }
    if (strstr(p, "\"final\":true"))
        return 0;
    for (unsigned i = 0; i < 6; i++) {
        if (field(p, keys[i], &v[i]) < 0 || (i < 3 && isnan(v[i]))) {
            snprintf(err, errlen, "no number for \"%s\" (not a socksload --intervals line?)",
                     keys[i]);
            return -EINVAL;
        }
    }
    char lat[3][32];
    for (unsigned i = 0; i < 3; i++) {
        if (isnan(v[3 + i]))
            snprintf(lat[i], sizeof(lat[i]), "?");
        else
            snprintf(lat[i], sizeof(lat[i]), "%.4f", v[3 + i] / 1e3);
    }
    snprintf(row, rowlen, "%.3f\t%.6f\t%.3f\t%s\t%s\t%s\n", v[0], v[1] * 8 / 1e6, v[2], lat[0],
             lat[1], lat[2]);
    return 1;
}

/* s in single quotes for gnuplot ('' is a quote inside), at most len bytes with the NUL. */
static void
quote(char *buf, size_t len, const char *s)
{
    size_t o = 0;

    if (len < 3)
        return;
    buf[o++] = '\'';
    for (; *s && o + 3 < len; s++) {
        if (*s == '\n' || *s == '\r')
            continue;
        if (*s == '\'')
            buf[o++] = '\'';
        buf[o++] = *s;
    }
    buf[o++] = '\'';
    buf[o] = '\0';
}

int
plot_script(char *buf, size_t len, const char *data, const char *out, enum plot_fmt fmt,
            const char *title)
{
    char qd[4200], qo[4200], qt[600];
    const char *term =
        fmt == PLOT_SVG
            ? "if (strstrt(GPVAL_TERMINALS, ' svg ') > 0) { set terminal svg size 1000,900 "
              "dynamic } else { print 'socksload plot: this gnuplot has no svg terminal'; "
              "exit status 3 }\n"
            : "if (strstrt(GPVAL_TERMINALS, ' pngcairo ') > 0) { set terminal pngcairo size "
              "1000,900 } else { if (strstrt(GPVAL_TERMINALS, ' png ') > 0) { set terminal png "
              "size 1000,900 } else { print 'socksload plot: this gnuplot has no png or "
              "pngcairo terminal'; exit status 3 } }\n";

    quote(qd, sizeof(qd), data);
    quote(qo, sizeof(qo), out);
    quote(qt, sizeof(qt), title);
    return snprintf(buf, len,
                    "%s"
                    "set output %s\n"
                    "set datafile separator '\\t'\n"
                    "set datafile missing '?'\n"
                    "set grid\n"
                    "set key top left\n"
                    "set xlabel 'seconds since the start'\n"
                    "set multiplot layout 3,1 title %s\n"
                    "set ylabel 'Mbit/s'\n"
                    "plot %s using 1:2 with linespoints title 'throughput'\n"
                    "set ylabel 'units/s'\n"
                    "plot %s using 1:3 with linespoints title 'rate'\n"
                    "set ylabel 'ms'\n"
                    "plot %s using 1:4 with linespoints title 'p50', '' using 1:5 with "
                    "linespoints title 'p99', '' using 1:6 with linespoints title 'max'\n"
                    "unset multiplot\n"
                    "set output\n",
                    term, qo, qt, qd, qd, qd);
}

static int
plot_usage(const char *msg)
{
    fprintf(stderr,
            "socksload plot: %s\nusage: socksload plot FILE [--out OUT.svg|OUT.png] [--title "
            "T]\n",
            msg);
    return 2;
}

/* Copies the interval lines of in (named path) into the data file fd as rows; returns the
 * rows, or -EINVAL after naming path:line on stderr. */
static int
plot_convert(FILE *in, const char *path, FILE *data)
{
    char *line = NULL, row[256], err[200];
    size_t cap = 0;
    unsigned lineno = 0;
    int rows = 0;

    while (getline(&line, &cap, in) != -1) {
        lineno++;
        int rc = plot_row(line, row, sizeof(row), err, sizeof(err));
        if (rc < 0) {
            fprintf(stderr, "socksload plot: %s:%u: %s\n", path, lineno, err);
            free(line);
            return -EINVAL;
        }
        if (rc > 0) {
            fputs(row, data);
            rows++;
        }
    }
    free(line);
    return rows;
}

/* Runs gnuplot (fork, exec, no shell) with script on its stdin; returns its wait status, or
 * -errno. */
static int
plot_run(const char *script)
{
    int p[2], status;

    if (pipe(p) == -1)
        return -errno;
    pid_t pid = fork();
    if (pid == -1) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        return -e;
    }
    if (pid == 0) {
        dup2(p[0], STDIN_FILENO);
        close(p[0]);
        close(p[1]);
        execlp("gnuplot", "gnuplot", (char *)NULL);
        _exit(127);
    }
    close(p[0]);
    size_t len = strlen(script), off = 0;
    while (off < len) {
        ssize_t n = write(p[1], script + off, len - off);
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1)
            break; /* gnuplot went away: its status says why */
        off += (size_t)n;
    }
    close(p[1]);
    while (waitpid(pid, &status, 0) == -1)
        if (errno != EINTR)
            return -errno;
    return status;
}

int
plot_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"out", required_argument, NULL, 'o'},
        {"title", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0},
    };
    const char *out = NULL, *title = NULL;
    char outbuf[4096], titlebuf[512], data[] = "/tmp/socksload-plot.XXXXXX";
    enum plot_fmt fmt;
    int c, rc = 1;

    optind = 1;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'o':
            out = optarg;
            break;
        case 't':
            title = optarg;
            break;
        case 'h':
            printf("usage: socksload plot FILE [--out OUT.svg|OUT.png] [--title T]\n");
            return 0;
        default:
            return plot_usage("bad option");
        }
    }
    if (optind + 1 != argc)
        return plot_usage("one FILE, the --intervals file of a run");
    const char *path = argv[optind];
    if (!out) {
        /* FILE with .svg for its extension (or added). */
        const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
        size_t stem = dot && (!slash || dot > slash) ? (size_t)(dot - path) : strlen(path);
        snprintf(outbuf, sizeof(outbuf), "%.*s.svg", (int)stem, path);
        out = outbuf;
    }
    if (plot_format(out, &fmt) < 0)
        return plot_usage("--out must end in .svg or .png");
    if (!title) {
        snprintf(titlebuf, sizeof(titlebuf), "socksload: %s", path);
        title = titlebuf;
    }
    FILE *in = fopen(path, "r");
    if (!in) {
        fprintf(stderr, "socksload plot: %s: %s\n", path, strerror(errno));
        return 1;
    }
    int dfd = mkstemp(data);
    FILE *df = dfd == -1 ? NULL : fdopen(dfd, "w");
    if (!df) {
        fprintf(stderr, "socksload plot: temporary file %s: %s\n", data, strerror(errno));
        if (dfd != -1) {
            close(dfd);
            unlink(data);
        }
        fclose(in);
        return 1;
    }
    int rows = plot_convert(in, path, df);
    fclose(in);
    if (fclose(df) != 0 && rows >= 0) {
        fprintf(stderr, "socksload plot: temporary file %s: %s\n", data, strerror(errno));
        goto out;
    }
    if (rows < 0)
        goto out;
    if (rows == 0) {
        fprintf(stderr, "socksload plot: %s: no interval lines\n", path);
        goto out;
    }
    char script[16384];
    plot_script(script, sizeof(script), data, out, fmt, title);
    int st = plot_run(script);
    if (st < 0) {
        fprintf(stderr, "socksload plot: cannot run gnuplot: %s\n", strerror(-st));
    } else if (WIFEXITED(st) && WEXITSTATUS(st) == 127) {
        fprintf(stderr, "socksload plot: cannot run gnuplot (install gnuplot-nox)\n");
    } else if (WIFEXITED(st) && WEXITSTATUS(st) == PLOT_NO_TERMINAL) {
        fprintf(stderr, "socksload plot: this gnuplot cannot make %s: use --out NAME.%s\n",
                fmt == PLOT_SVG ? "SVG" : "PNG", fmt == PLOT_SVG ? "png" : "svg");
    } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "socksload plot: gnuplot failed (%s %d)\n",
                WIFEXITED(st) ? "exit status" : "signal",
                WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    } else {
        struct stat sb;
        if (stat(out, &sb) == 0 && sb.st_size > 0) {
            fprintf(stderr, "socksload plot: wrote %s (%d intervals)\n", out, rows);
            rc = 0;
        } else {
            fprintf(stderr, "socksload plot: gnuplot wrote nothing to %s\n", out);
        }
    }
out:
    unlink(data);
    return rc;
}
