/*
 * press.c -- pneumatic press.
 *
 * Chamber gauge pressure p [bar], valve command c (true = fill from supply, false = vent):
 *
 *     dp/dt = (p_target - p) / tau,   p_target = c ? supply_pressure : 0,
 *                                     tau      = c ? tau_fill : tau_vent,
 *     p <= relief_pressure            (ideal relief valve)
 *
 * Exact solution over an interval dt with c held: p(dt) = p_target + (p0 - p_target) e^{-dt/tau};
 * the relief valve caps the result at relief_pressure (exact for an ideal valve: once the
 * pressure reaches the cracking pressure it stays there while the supply pushes).
 *
 * Ram (x, 0 = open, stroke = closed), overdamped: damping d, spring k, preload F0, area A:
 *
 *     d dx/dt = p A - F0 - k x   =>   dx/dt = (f(p) - x) / tau_ram,
 *     f(p)    = (p * 1e5 * A - F0) / k,   tau_ram = d / k,
 *     0 <= x <= stroke                (end stops; the ram rests on a stop while pushed into it)
 *
 * Integration: the step is split into n = ceil(h / dt_max) equal sub-steps with
 * dt_max = min(tau_fill, tau_vent, tau_ram) / 50. Per sub-step the pressure is advanced
 * exactly; for the ram, f is taken linear in time between its values at the sub-step ends
 * (first-order hold), for which the ODE has the exact solution
 *
 *     x(dt) = f1 - s tau_ram + (x0 - f0 + s tau_ram) e^{-dt/tau_ram},   s = (f1 - f0) / dt,
 *
 * (second-order accurate, unconditionally stable), then x is clamped to the end stops.
 * When pressure and ram have settled at their equilibrium (within 1e-12) the remaining
 * sub-steps are skipped, so a step of any size h > 0 costs at most a few thousand
 * sub-steps.
 *
 * Limit switches (on the true ram position): closed_switch when x >= stroke - switch_tolerance,
 * open_switch when x <= switch_tolerance.
 *
 * Sensor noise (prng.h): pressure_meas = pressure + pressure_noise * z1 and
 * ram_position_meas = ram_position + position_noise * z2, z1, z2 standard normal, not
 * clipped (a real transducer reads slightly negative around zero). The generator is seeded
 * from `seed` in model_init, which also draws the noise of the initial outputs; afterwards
 * exactly two variates are drawn at the end of every doStep, after the sub-stepping, so
 * the noise does not depend on the number of sub-steps. std 0 gives the true value exactly.
 * The generator lives in ModelData and is part of the FMU state.
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

#define PA_PER_BAR 1.0e5

static ModelStatus check_parameters(const ModelVariables *v, ModelEnv *env)
{
    struct {
        const char *name;
        double value;
        int strictly_positive;
    } checks[] = {
        {"supply_pressure", v->supply_pressure, 0}, {"relief_pressure", v->relief_pressure, 1},
        {"tau_fill", v->tau_fill, 1},               {"tau_vent", v->tau_vent, 1},
        {"tau_ram", v->tau_ram, 1},                 {"stroke", v->stroke, 1},
        {"piston_area", v->piston_area, 1},         {"spring_rate", v->spring_rate, 1},
        {"spring_preload", v->spring_preload, 0},   {"switch_tolerance", v->switch_tolerance, 0},
        {"pressure_noise", v->pressure_noise, 0},   {"position_noise", v->position_noise, 0},
    };
    size_t i;
    for (i = 0; i < sizeof checks / sizeof checks[0]; i++) {
        double x = checks[i].value;
        if (checks[i].strictly_positive ? !(x > 0.0) : !(x >= 0.0)) {
            model_logf(env, MODEL_ERROR, "press: parameter %s must be %s 0 (got %g).", checks[i].name,
                       checks[i].strictly_positive ? ">" : ">=", x);
            return MODEL_ERROR;
        }
    }
    return MODEL_OK;
}

/* Unclamped equilibrium ram position for pressure p (bar). */
static double ram_equilibrium(const ModelVariables *v, double p)
{
    return (p * PA_PER_BAR * v->piston_area - v->spring_preload) / v->spring_rate;
}

static double clamp(double x, double lo, double hi) { return x < lo ? lo : (x > hi ? hi : x); }

static void update_switches(ModelVariables *v)
{
    v->closed_switch = v->ram_position >= v->stroke - v->switch_tolerance;
    v->open_switch = v->ram_position <= v->switch_tolerance;
}

/* Measured outputs for the current communication point: two draws, in this order. */
static void update_measurements(ModelData *d)
{
    d->v.pressure_meas = prng_measure(&d->rng, d->v.pressure, d->v.pressure_noise);
    d->v.ram_position_meas = prng_measure(&d->rng, d->v.ram_position, d->v.position_noise);
}

ModelStatus model_init(void *data, double start_time, ModelEnv *env)
{
    ModelData *d = (ModelData *)data;
    ModelVariables *v = &d->v;
    (void)start_time;
    if (check_parameters(v, env) != MODEL_OK) return MODEL_ERROR;
    v->pressure = 0.0;
    v->ram_position = 0.0;
    v->overpressure = 0;
    update_switches(v);
    PRNG_SEED_MODEL(&d->rng, v->seed); /* re-seeded on every call: model_init stays idempotent */
    update_measurements(d);
    return MODEL_OK;
}

ModelStatus model_do_step(void *data, double t, double h, ModelEnv *env)
{
    ModelVariables *v = &((ModelData *)data)->v;
    double tau_p, p_target, p_eq, x_eq, dt_max, n, dt, a_p, a_x, stau, i;
    double p = v->pressure, x = v->ram_position;
    int relieved = 0;
    (void)t;
    if (check_parameters(v, env) != MODEL_OK) return MODEL_ERROR; /* pressures are tunable */

    tau_p = v->valve_cmd ? v->tau_fill : v->tau_vent;
    p_target = v->valve_cmd ? v->supply_pressure : 0.0;
    p_eq = p_target < v->relief_pressure ? p_target : v->relief_pressure;
    x_eq = clamp(ram_equilibrium(v, p_eq), 0.0, v->stroke);

    dt_max = fmin(fmin(v->tau_fill, v->tau_vent), v->tau_ram) / 50.0;
    n = ceil(h / dt_max);
    if (n < 1.0) n = 1.0;
    dt = h / n;
    a_p = exp(-dt / tau_p);
    a_x = exp(-dt / v->tau_ram);

    for (i = 0.0; i < n; i += 1.0) {
        double p1 = p_target + (p - p_target) * a_p;
        double f0, f1, x1;
        if (p1 > v->relief_pressure) {
            p1 = v->relief_pressure;
            relieved = 1;
        }
        f0 = ram_equilibrium(v, p);
        f1 = ram_equilibrium(v, p1);
        stau = (f1 - f0) / dt * v->tau_ram;
        x1 = f1 - stau + (x - f0 + stau) * a_x;
        x = clamp(x1, 0.0, v->stroke);
        p = p1;
        if (fabs(p - p_eq) <= 1e-12 * (1.0 + fabs(p_eq)) && fabs(x - x_eq) <= 1e-12 * (1.0 + v->stroke)) {
            p = p_eq; /* settled: the rest of the step changes nothing */
            x = x_eq;
            break;
        }
    }
    v->pressure = p;
    v->ram_position = x;
    v->overpressure = relieved;
    update_switches(v);
    update_measurements((ModelData *)data);
    return MODEL_OK;
}
