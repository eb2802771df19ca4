/*
 * integrator.c -- generic test FMU.
 *
 *     dy/dt = k * u,   y(start) = y0
 *
 * With u held over the step (zero-order hold) the exact solution is
 *     y(t + h) = y(t) + k * u * h.
 *
 * Fault injection (each off when negative):
 *   fail_at    : a step starting at t >= fail_at returns Error (state unchanged).
 *   discard_at : a step starting at t >= discard_at returns Discard and requests the end
 *                of the simulation (fmi2GetBooleanStatus(fmi2Terminated) = true,
 *                FMI 3.0 terminateSimulation = true); last successful time = t.
 *   nan_at     : y is NaN at every communication point >= nan_at (including the start
 *                time when nan_at <= start time); the NaN persists.
 */
#include <math.h>

#include "model.h"
#include "model_spec.h"

typedef struct {
    ModelVariables v; /* must be first */
} ModelData;

const size_t MODEL_DATA_SIZE = sizeof(ModelData);

ModelStatus model_init(void *data, double start_time, ModelEnv *env)
{
    ModelVariables *v = &((ModelData *)data)->v;
    (void)env;
    v->y = v->y0;
    if (v->nan_at >= 0.0 && start_time >= v->nan_at) v->y = NAN;
    return MODEL_OK;
}

ModelStatus model_do_step(void *data, double t, double h, ModelEnv *env)
{
    ModelVariables *v = &((ModelData *)data)->v;
    if (v->fail_at >= 0.0 && t >= v->fail_at) {
        model_logf(env, MODEL_ERROR, "integrator: injected failure at t=%g (fail_at=%g).", t, v->fail_at);
        return MODEL_ERROR;
    }
    if (v->discard_at >= 0.0 && t >= v->discard_at) {
        model_logf(env, MODEL_DISCARD, "integrator: injected discard at t=%g (discard_at=%g); requesting termination.",
                   t, v->discard_at);
        model_request_terminate(env);
        return MODEL_DISCARD;
    }
    v->y += v->k * v->u * h;
    if (v->nan_at >= 0.0 && t + h >= v->nan_at) v->y = NAN;
    return MODEL_OK;
}
