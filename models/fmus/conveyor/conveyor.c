/*
 * conveyor.c -- DC-motor-driven conveyor belt.
 *
 * Dynamics (belt speed v, belt position x, normalised command u in [0, 1]):
 *
 *     dv/dt = (gain * u - v) / tau          (motor + belt as a first-order lag)
 *     dx/dt = v
 *
 * With u held constant over a step [t, t + h] (zero-order hold) and v_ss = gain * u,
 * the exact solution is
 *
 *     v(t + h) = v_ss + (v(t) - v_ss) * exp(-h / tau)
 *              = v(t) + (v_ss - v(t)) * (1 - exp(-h / tau))
 *     x(t + h) = x(t) + v_ss * h + (v(t) - v_ss) * tau * (1 - exp(-h / tau))
 *
 * computed with expm1 (1 - exp(-h/tau) = -expm1(-h/tau)) so that tiny steps keep full
 * precision. The step is exact for any h > 0; no sub-stepping is needed.
 *
 * Motor current: the armature equation of a DC motor with negligible inductance is
 * i = (V - k_e * omega) / R, i.e. linear in command and speed. Parameterised by the
 * stall current (u = 1, v = 0) and the rated current (u = 1, v = gain, steady state):
 *
 *     i = stall_current * u - (stall_current - rated_current) * v / gain
 *
 * so i = stall_current * u at standstill and i = rated_current * u in steady state.
 *
 * Encoder: encoder_count = floor(x * encoder_resolution), wrapped to a signed 32-bit
 * counter like a hardware quadrature counter. belt_phase = x mod belt_length.
 *
 * Sensor noise (prng.h): speed_meas = belt_speed + speed_noise * z1 and
 * current_meas = motor_current + current_noise * z2, with z1, z2 standard normal. The
 * generator is seeded from `seed` in model_init, which also draws the noise of the
 * initial outputs (t = start time); afterwards exactly two variates are drawn at the end
 * of every doStep, for the new communication point -- independent of the step size and
 * of the noise settings (std 0 gives the true value exactly). The generator lives in
 * ModelData, so it is part of the FMU state. The true outputs never see the noise.
 */
#include <math.h>

#include "model.h"
#include "model_spec.h"
#include "prng.h"

typedef struct {
    ModelVariables v; /* must be first */
    Prng rng;         /* sensor noise generator (part of the FMU state) */
} ModelData;

const size_t MODEL_DATA_SIZE = sizeof(ModelData);

static ModelStatus check_parameters(const ModelVariables *v, ModelEnv *env)
{
    if (!(v->tau > 0.0)) {
        model_logf(env, MODEL_ERROR, "conveyor: parameter tau must be > 0 (got %g).", v->tau);
        return MODEL_ERROR;
    }
    if (!(v->gain >= 0.0)) {
        model_logf(env, MODEL_ERROR, "conveyor: parameter gain must be >= 0 (got %g).", v->gain);
        return MODEL_ERROR;
    }
    if (!(v->belt_length > 0.0)) {
        model_logf(env, MODEL_ERROR, "conveyor: parameter belt_length must be > 0 (got %g).", v->belt_length);
        return MODEL_ERROR;
    }
    if (!(v->encoder_resolution > 0.0)) {
        model_logf(env, MODEL_ERROR, "conveyor: parameter encoder_resolution must be > 0 (got %g).",
                   v->encoder_resolution);
        return MODEL_ERROR;
    }
    if (!(v->stall_current >= 0.0) || !(v->rated_current >= 0.0)) {
        model_logf(env, MODEL_ERROR, "conveyor: currents must be >= 0 (stall %g, rated %g).", v->stall_current,
                   v->rated_current);
        return MODEL_ERROR;
    }
    if (!(v->speed_noise >= 0.0) || !(v->current_noise >= 0.0)) {
        model_logf(env, MODEL_ERROR, "conveyor: noise standard deviations must be >= 0 (speed %g, current %g).",
                   v->speed_noise, v->current_noise);
        return MODEL_ERROR;
    }
    return MODEL_OK;
}

static double clamp_command(double u)
{
    if (u < 0.0) return 0.0;
    if (u > 1.0) return 1.0;
    return u;
}

static int32_t wrap_counter(double counts)
{
    const double two32 = 4294967296.0;
    double m = fmod(floor(counts), two32);
    if (m < 0.0) m += two32;
    return (int32_t)(uint32_t)m;
}

/* Outputs that are algebraic functions of the states and the (held) command. */
static void update_outputs(ModelVariables *v)
{
    double u = clamp_command(v->motor_cmd);
    double phase = fmod(v->belt_position, v->belt_length);
    if (phase < 0.0) phase += v->belt_length;
    v->belt_phase = phase;
    v->encoder_count = wrap_counter(v->belt_position * v->encoder_resolution);
    v->motor_current = v->stall_current * u;
    if (v->gain > 0.0) v->motor_current -= (v->stall_current - v->rated_current) * v->belt_speed / v->gain;
}

/* Measured outputs for the current communication point: two draws, in this order. */
static void update_measurements(ModelData *d)
{
    d->v.speed_meas = prng_measure(&d->rng, d->v.belt_speed, d->v.speed_noise);
    d->v.current_meas = prng_measure(&d->rng, d->v.motor_current, d->v.current_noise);
}

ModelStatus model_init(void *data, double start_time, ModelEnv *env)
{
    ModelData *d = (ModelData *)data;
    ModelVariables *v = &d->v;
    (void)start_time;
    if (check_parameters(v, env) != MODEL_OK) return MODEL_ERROR;
    v->belt_speed = 0.0;
    v->belt_position = 0.0;
    update_outputs(v);
    PRNG_SEED_MODEL(&d->rng, v->seed); /* re-seeded on every call: model_init stays idempotent */
    update_measurements(d);
    return MODEL_OK;
}

ModelStatus model_do_step(void *data, double t, double h, ModelEnv *env)
{
    ModelVariables *v = &((ModelData *)data)->v;
    double u, v_ss, v0, one_minus_a;
    (void)t;
    if (check_parameters(v, env) != MODEL_OK) return MODEL_ERROR; /* gain is tunable */
    u = clamp_command(v->motor_cmd);
    v_ss = v->gain * u;
    v0 = v->belt_speed;
    one_minus_a = -expm1(-h / v->tau); /* 1 - exp(-h/tau) */
    v->belt_position += v_ss * h + (v0 - v_ss) * v->tau * one_minus_a;
    v->belt_speed = v0 + (v_ss - v0) * one_minus_a;
    update_outputs(v);
    update_measurements((ModelData *)data);
    return MODEL_OK;
}
