/*
 * faulty.c -- test FMU for faults inside the framework (tests/reliability/test_faults.py).
 *
 *     y' = u,  t = end time of the last step
 *
 * Fault injection (each off when negative):
 *   hang_at      : the step starting at t >= hang_at never returns: it sleeps forever
 *                  (a model stuck in a solver loop or waiting on a dead licence server).
 *                  Nothing inside the process can interrupt it; the framework's watchdog
 *                  has to give up on it.
 *   crash_at     : the step starting at t >= crash_at ends the whole process, as
 *                  crash_mode says: 1 abort() (SIGABRT), 2 a write through a NULL pointer
 *                  (SIGSEGV), 3 SIGKILL to itself (what the OOM killer does).
 *   step_sleep_s : every step sleeps this long in wall time (a slow model; 0 = off).
 */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "model.h"
#include "model_spec.h"

typedef struct {
    ModelVariables v; /* must be first */
} ModelData;

const size_t MODEL_DATA_SIZE = sizeof(ModelData);

static void sleep_s(double seconds)
{
    struct timespec ts;
    if (seconds <= 0.0) return;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0) {
        /* interrupted by a signal: sleep the rest */
    }
}

ModelStatus model_init(void *data, double start_time, ModelEnv *env)
{
    ModelVariables *v = &((ModelData *)data)->v;
    (void)env;
    v->y = 0.0;
    v->t = start_time;
    return MODEL_OK;
}

ModelStatus model_do_step(void *data, double t, double h, ModelEnv *env)
{
    ModelVariables *v = &((ModelData *)data)->v;
    if (v->hang_at >= 0.0 && t >= v->hang_at) {
        model_logf(env, MODEL_OK, "faulty: hanging at t=%g (hang_at=%g).", t, v->hang_at);
        for (;;) sleep_s(3600.0);
    }
    if (v->crash_at >= 0.0 && t >= v->crash_at) {
        switch (v->crash_mode) {
        case 2: {
            volatile int *volatile null_ptr = NULL;
            *null_ptr = 1; /* SIGSEGV */
            break;
        }
        case 3:
            kill(getpid(), SIGKILL);
            for (;;) sleep_s(1.0);
        default:
            abort();
        }
    }
    sleep_s(v->step_sleep_s);
    v->y += v->u * h;
    v->t = t + h;
    return MODEL_OK;
}
