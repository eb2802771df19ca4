/*
 * feeder.c -- gravity magazine with a pneumatic pusher (part feeder of the conveyor).
 *
 * Pusher (position x, 0 = retracted, S = stroke), command c = release_cmd held over the step:
 *
 *     dx/dt = (x_target - x) / tau,   x_target = c ? S : 0,   tau = c ? tau_extend : tau_retract
 *
 * integrated exactly: x(t + s) = x + (x_target - x) * (1 - e^{-s/tau}) (with expm1).
 *
 * Release: the part at the bottom of the magazine leaves when the *extending* pusher passes
 * x_r = release_fraction * S. The crossing time inside a step is solved exactly,
 *
 *     s_r = tau_extend * ln((S - x0) / (S - x_r)),
 *
 * and the magazine is updated at t + s_r (refill arrivals before s_r count, later ones do
 * not), so the result does not depend on the step size. A crossing releases one part if
 * the magazine is not empty and then disarms the pusher whether or not a part left (an
 * extended pusher blocks the magazine outlet); it is re-armed once the pusher is back
 * below 10 % of the stroke. Hence at most one part per extend/retract cycle, and an
 * extension that is aborted before x_r releases nothing and keeps the pusher armed.
 * x is monotonic over a step (c is held), so at most one crossing per step.
 *
 * Refill (refill_rate r > 0): while the magazine is not full, parts arrive at the times
 * origin + k / r (k = 1, 2, ...), where `origin` is the moment the supply (re)started:
 * the start time, or the release that freed a place in a full magazine (a full magazine
 * blocks the supply and its progress is lost). Counting arrivals as floor(r * (t - origin))
 * rather than accumulating r * h keeps the arrival times independent of the step size.
 * refill_rate is tunable: on a change the fractional progress towards the next part is
 * kept and the supply continues at the new rate from the start of the next step.
 *
 * Sensor noise (prng.h): pusher_position_meas = pusher_position + position_noise * z, one
 * standard normal variate drawn at the end of each doStep (and one in model_init for the
 * initial outputs, after seeding the generator from `seed`). The limit switches and the
 * release logic use the true position. The generator is part of the FMU state.
 */
#include <math.h>

#include "model.h"
#include "model_spec.h"
#include "prng.h"

#define REARM_FRACTION 0.1 /* the pusher must come back below this fraction of the stroke */

typedef struct {
    ModelVariables v;        /* must be first */
    Prng rng;                /* sensor noise generator */
    double refill_origin;    /* time the refill supply (re)started */
    double refill_done;      /* parts delivered since refill_origin */
    double refill_rate_used; /* refill_rate the supply runs at (detects tuning) */
    int32_t refill_active;   /* supply running (rate > 0 and magazine not full) */
    int32_t armed;           /* the next crossing of the release point pushes a part */
} ModelData;

const size_t MODEL_DATA_SIZE = sizeof(ModelData);

static ModelStatus check_parameters(const ModelVariables *v, ModelEnv *env)
{
    if (v->capacity < 0 || v->initial_parts < 0 || v->initial_parts > v->capacity) {
        model_logf(env, MODEL_ERROR, "feeder: need 0 <= initial_parts <= capacity (got initial_parts %d, capacity %d).",
                   (int)v->initial_parts, (int)v->capacity);
        return MODEL_ERROR;
    }
    if (!(v->stroke > 0.0) || !(v->tau_extend > 0.0) || !(v->tau_retract > 0.0)) {
        model_logf(env, MODEL_ERROR, "feeder: stroke, tau_extend and tau_retract must be > 0 (got %g, %g, %g).",
                   v->stroke, v->tau_extend, v->tau_retract);
        return MODEL_ERROR;
    }
    if (!(v->release_fraction > REARM_FRACTION && v->release_fraction < 1.0)) {
        model_logf(env, MODEL_ERROR, "feeder: release_fraction must be in (%g, 1) (got %g).", REARM_FRACTION,
                   v->release_fraction);
        return MODEL_ERROR;
    }
    if (!(v->refill_rate >= 0.0) || !(v->switch_tolerance >= 0.0) || !(v->position_noise >= 0.0)) {
        model_logf(env, MODEL_ERROR,
                   "feeder: refill_rate, switch_tolerance and position_noise must be >= 0 (got %g, %g, %g).",
                   v->refill_rate, v->switch_tolerance, v->position_noise);
        return MODEL_ERROR;
    }
    return MODEL_OK;
}

/* Start (or restart) the refill supply at time t0 if there is a rate and room. */
static void refill_start(ModelData *d, double t0)
{
    d->refill_rate_used = d->v.refill_rate;
    d->refill_active = d->refill_rate_used > 0.0 && d->v.parts_in_magazine < d->v.capacity;
    d->refill_origin = t0;
    d->refill_done = 0.0;
}

/* refill_rate was tuned: keep the progress towards the next part, continue at the new rate. */
static void refill_retune(ModelData *d, double t)
{
    double frac = 0.0, r = d->v.refill_rate;
    if (d->refill_active && d->refill_rate_used > 0.0) {
        frac = d->refill_rate_used * (t - d->refill_origin) - d->refill_done;
        if (!(frac >= 0.0)) frac = 0.0;
        if (frac >= 1.0) frac = 0.0; /* cannot happen: arrivals are booked at every step end */
    }
    refill_start(d, t);
    if (d->refill_active) d->refill_origin = t - frac / r;
}

/* Book the refill arrivals up to time te. */
static void refill_until(ModelData *d, double te)
{
    double due, add;
    int32_t room;
    if (!d->refill_active) return;
    due = floor(d->refill_rate_used * (te - d->refill_origin));
    if (!(due > d->refill_done)) return;
    add = due - d->refill_done;
    room = d->v.capacity - d->v.parts_in_magazine;
    if (add >= (double)room) {
        d->v.parts_in_magazine = d->v.capacity; /* full: the supply is blocked */
        d->refill_active = 0;
    } else {
        d->v.parts_in_magazine += (int32_t)add;
        d->refill_done = due;
    }
}

static void update_outputs(ModelData *d)
{
    ModelVariables *v = &d->v;
    v->pusher_extended = v->pusher_position >= v->stroke - v->switch_tolerance;
    v->pusher_retracted = v->pusher_position <= v->switch_tolerance;
    v->magazine_empty = v->parts_in_magazine == 0;
    v->pusher_position_meas = prng_measure(&d->rng, v->pusher_position, v->position_noise);
}

ModelStatus model_init(void *data, double start_time, ModelEnv *env)
{
    ModelData *d = (ModelData *)data;
    ModelVariables *v = &d->v;
    if (check_parameters(v, env) != MODEL_OK) return MODEL_ERROR;
    v->pusher_position = 0.0;
    v->parts_in_magazine = v->initial_parts;
    v->parts_released = 0;
    d->armed = 1;
    refill_start(d, start_time);
    PRNG_SEED_MODEL(&d->rng, v->seed); /* re-seeded on every call: model_init stays idempotent */
    update_outputs(d);
    return MODEL_OK;
}

ModelStatus model_do_step(void *data, double t, double h, ModelEnv *env)
{
    ModelData *d = (ModelData *)data;
    ModelVariables *v = &d->v;
    double x0 = v->pusher_position, x1, target, tau, x_r;
    if (check_parameters(v, env) != MODEL_OK) return MODEL_ERROR; /* refill_rate, position_noise are tunable */
    if (v->refill_rate != d->refill_rate_used) refill_retune(d, t);

    target = v->release_cmd ? v->stroke : 0.0;
    tau = v->release_cmd ? v->tau_extend : v->tau_retract;
    x1 = x0 + (target - x0) * -expm1(-h / tau);
    x_r = v->release_fraction * v->stroke;

    if (v->release_cmd && d->armed && x0 < x_r && x1 >= x_r) {
        double s_r = tau * log((v->stroke - x0) / (v->stroke - x_r));
        if (!(s_r <= h)) s_r = h; /* rounding */
        if (!(s_r >= 0.0)) s_r = 0.0;
        refill_until(d, t + s_r);
        d->armed = 0;
        if (v->parts_in_magazine > 0) {
            v->parts_in_magazine -= 1;
            v->parts_released += 1;
            /* a full magazine had blocked the supply: it restarts now that there is room */
            if (!d->refill_active) refill_start(d, t + s_r);
        } else {
            model_logf(env, MODEL_OK, "feeder: pusher stroke at t=%g found the magazine empty.", t + s_r);
        }
    }
    refill_until(d, t + h);

    v->pusher_position = x1;
    if (x1 <= REARM_FRACTION * v->stroke) d->armed = 1;
    update_outputs(d);
    return MODEL_OK;
}
