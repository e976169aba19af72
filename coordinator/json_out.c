/* The coordinator's JSON output: records, results, sweeps, errors (see coordinator.h). */
#include "maas/base.h"
#include "maas/clock.h"
#include "maas/config.h"
#include "maas/cost.h"
#include "maas/strbuf.h"
#include "maas/broker.h"
#include "maas/client.h"
#include "maas/http.h"
#include "maas/job.h"
#include "maas/json.h"
#include "maas/kv.h"
#include "maas/model_io.h"
#include "maas/protocol.h"
#include "maas/sweep.h"
#include "coordinator.h"

#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ JSON out */

void coord_put_str(maas_strbuf *t, const char *s) {
    maas_strbuf_printf(t, "\"");
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            maas_strbuf_printf(t, "\\%c", c);
        else if (c < 0x20)
            maas_strbuf_printf(t, "\\u%04x", c);
        else
            maas_strbuf_printf(t, "%c", c);
    }
    maas_strbuf_printf(t, "\"");
}

void coord_put_num(maas_strbuf *t, double v) {
    if (isnan(v) || isinf(v))
        maas_strbuf_printf(t, "null");
    else
        maas_strbuf_printf(t, "%.9g", v);
}

void coord_reply_text(maas_http_response *res, int status, maas_strbuf *t) {
    res->status = status;
    snprintf(res->content_type, sizeof(res->content_type), "application/json");
    maas_strbuf_printf(t, "\n");
    res->body = t->p;
    res->body_len = t->len;
}

void coord_reply_error(maas_http_response *res, int status, const char *code, const char *msg) {
    maas_strbuf t = {0};
    maas_strbuf_printf(&t, "{\"error\": {\"code\": ");
    coord_put_str(&t, code);
    maas_strbuf_printf(&t, ", \"message\": ");
    coord_put_str(&t, msg);
    maas_strbuf_printf(&t, "}}");
    coord_reply_text(res, status, &t);
}

/* The HTTP status that fits a maas error. */
int coord_status_of(maas_err e) {
    switch (e) {
    case MAAS_ERR_UNKNOWN_NAME:
        return 404;
    case MAAS_ERR_UNAUTHENTICATED:
        return 401;
    case MAAS_ERR_FORBIDDEN:
        return 403;
    case MAAS_ERR_CONFLICT:
        return 409;
    case MAAS_ERR_UNAVAILABLE:
    case MAAS_ERR_TIMEOUT:
        return 503;
    case MAAS_ERR_OUT_OF_MEMORY:
    case MAAS_ERR_SERVER_ERROR: /* Redis refused it: the service's fault, not the request's */
        return 500;
    case MAAS_ERR_LIMIT_EXCEEDED:
        return 413;
    default:
        return 400;
    }
}

void coord_put_result(maas_strbuf *t, const maas_job_record *r) {
    maas_result res;
    char e[MAAS_ERRSTR_SIZE];
    if (!r->result || maas_result_decode(r->result, r->result_len, &res, e, sizeof(e))) {
        maas_strbuf_printf(t, "null");
        return;
    }
    maas_strbuf_printf(t, "{\"type\": \"%s\", \"model\": ", maas_job_type_name(res.type));
    coord_put_str(t, res.model);
    maas_strbuf_printf(t, ", \"version\": %d", res.version);
    if (res.type == MAAS_JOBTYPE_INFER) {
        maas_strbuf_printf(t, ", \"outputs\": [");
        for (uint32_t i = 0; i < res.outputs.rows; i++) {
            maas_strbuf_printf(t, i ? ", [" : "[");
            for (uint32_t j = 0; j < res.outputs.cols; j++) {
                if (j) maas_strbuf_printf(t, ", ");
                coord_put_num(t, res.outputs.data[(size_t)i * res.outputs.cols + j]);
            }
            maas_strbuf_printf(t, "]");
        }
        maas_strbuf_printf(t, "]");
        if (res.classes) {
            maas_strbuf_printf(t, ", \"classes\": [");
            for (uint32_t i = 0; i < res.outputs.rows; i++)
                maas_strbuf_printf(t, i ? ", %d" : "%d", res.classes[i]);
            maas_strbuf_printf(t, "]");
        }
        uint32_t k = res.outputs.cols;
        if (res.attributions.rows == res.outputs.rows && res.attributions.rows > 0 && k > 0 &&
            res.attributions.cols % k == 0) {
            /* per row, per output, one attribution per input feature */
            uint32_t n = res.attributions.cols / k;
            maas_strbuf_printf(t, ", \"attributions\": [");
            for (uint32_t i = 0; i < res.attributions.rows; i++) {
                maas_strbuf_printf(t, i ? ", [" : "[");
                for (uint32_t j = 0; j < k; j++) {
                    maas_strbuf_printf(t, j ? ", [" : "[");
                    const float *a = res.attributions.data + ((size_t)i * k + j) * n;
                    for (uint32_t f = 0; f < n; f++) {
                        if (f) maas_strbuf_printf(t, ", ");
                        coord_put_num(t, a[f]);
                    }
                    maas_strbuf_printf(t, "]");
                }
                maas_strbuf_printf(t, "]");
            }
            maas_strbuf_printf(t, "]");
        }
    } else {
        maas_strbuf_printf(t, ", \"rows\": %zu, \"loss\": ", res.rows);
        coord_put_num(t, res.loss);
        maas_strbuf_printf(t, ", \"accuracy\": ");
        coord_put_num(t, res.accuracy);
        if (res.type == MAAS_JOBTYPE_TRAIN) {
            maas_strbuf_printf(t, ", \"created\": %s, \"history\": [",
                               res.created ? "true" : "false");
            for (int i = 0; i < res.n_history; i++) {
                const maas_history_entry *h = &res.history[i];
                maas_strbuf_printf(t, "%s{\"epoch\": %d, \"loss\": ", i ? ", " : "", h->epoch);
                coord_put_num(t, h->loss);
                maas_strbuf_printf(t, ", \"accuracy\": ");
                coord_put_num(t, h->accuracy);
                maas_strbuf_printf(t, ", \"val_loss\": ");
                coord_put_num(t, h->val_loss);
                maas_strbuf_printf(t, ", \"val_accuracy\": ");
                coord_put_num(t, h->val_accuracy);
                maas_strbuf_printf(t, "}");
            }
            maas_strbuf_printf(t, "]");
        }
    }
    maas_strbuf_printf(t, "}");
    maas_result_release(&res);
}

static void put_record(maas_strbuf *t, const maas_job_record *r, int with_result) {
    maas_strbuf_printf(t, "{\"id\": ");
    coord_put_str(t, r->id);
    maas_strbuf_printf(t, ", \"type\": ");
    coord_put_str(t, r->type);
    maas_strbuf_printf(t, ", \"model\": ");
    coord_put_str(t, r->model);
    maas_strbuf_printf(t, ", \"state\": \"%s\", \"attempts\": %d, \"worker\": ",
                       maas_job_state_name(r->state), r->attempts);
    coord_put_str(t, r->worker);
    maas_strbuf_printf(t, ", \"created_ms\": %lld, \"started_ms\": %lld, \"finished_ms\": %lld",
                       (long long)r->created_ms, (long long)r->started_ms,
                       (long long)r->finished_ms);
    maas_strbuf_printf(t, ", \"progress\": %s",
                       r->progress && r->progress[0] == '{' ? r->progress : "null");
    if (r->error_code[0]) {
        maas_strbuf_printf(t, ", \"error\": {\"code\": ");
        coord_put_str(t, r->error_code);
        maas_strbuf_printf(t, ", \"message\": ");
        coord_put_str(t, r->error_message);
        maas_strbuf_printf(t, "}");
    }
    if (r->has_cost) {
        char cost[320];
        if (maas_job_cost_json(&r->cost, cost, sizeof(cost)) > 0)
            maas_strbuf_printf(t, ", \"cost\": %s", cost);
    }
    if (with_result) {
        maas_strbuf_printf(t, ", \"result\": ");
        coord_put_result(t, r);
    }
    maas_strbuf_printf(t, "}");
}

void coord_put_record(maas_strbuf *t, const maas_job_record *r) {
    put_record(t, r, 1);
}

void coord_put_record_brief(maas_strbuf *t, const maas_job_record *r) {
    put_record(t, r, 0);
}

void coord_put_sweep(maas_strbuf *t, const maas_sweep *s, const maas_sweep_row *rows,
                     int finished) {
    maas_strbuf_printf(t, "{\"id\": ");
    coord_put_str(t, s->id);
    maas_strbuf_printf(t, ", \"model\": ");
    coord_put_str(t, s->model);
    maas_strbuf_printf(t, ", \"metric\": \"%s\", \"promote\": ", maas_sweep_metric_name(s->metric));
    coord_put_str(t, s->promote);
    maas_strbuf_printf(t, ", \"points\": %d, \"finished\": %d, \"done\": %s", s->n, finished,
                       s->done ? "true" : "false");
    if (s->done) {
        maas_strbuf_printf(t, ", \"best_version\": %d, \"best_job\": ", s->best_version);
        coord_put_str(t, s->best_job);
    }
    maas_strbuf_printf(t, ", \"ranking\": [");
    for (int i = 0; rows && i < s->n; i++) {
        const maas_sweep_row *r = &rows[i];
        const maas_sweep_point *p = &s->points[r->point];
        maas_strbuf_printf(t, "%s{\"job\": ", i ? ", " : "");
        coord_put_str(t, p->job);
        maas_strbuf_printf(t, ", \"state\": \"%s\"", maas_job_state_name(r->state));
        if (r->state == MAAS_JOB_SUCCEEDED) {
            maas_strbuf_printf(t, ", \"rank\": %d, \"version\": %d, \"val_loss\": ", i + 1,
                               r->version);
            coord_put_num(t, r->val_loss);
            maas_strbuf_printf(t, ", \"val_accuracy\": ");
            coord_put_num(t, r->val_accuracy);
        }
        maas_strbuf_printf(t,
                           ", \"learning_rate\": %.9g, \"batch_size\": %d, \"epochs\": %d, "
                           "\"layers\": ",
                           (double)p->lr, p->batch_size, p->epochs);
        coord_put_str(t, p->layers);
        if (r->error[0]) {
            maas_strbuf_printf(t, ", \"error\": ");
            coord_put_str(t, r->error);
        }
        maas_strbuf_printf(t, "}");
    }
    maas_strbuf_printf(t, "]}");
}
