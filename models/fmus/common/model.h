/*
 * model.h -- the tiny model interface shared by the FMI 2.0 and FMI 3.0 wrappers.
 *
 * A model consists of
 *   - a generated header "model_spec.h" (written by models/build.py from the model's
 *     spec.json) that defines `ModelVariables` -- one C field per FMI variable, in the
 *     order of the spec -- the value-reference macros `VR_<name>`, and the model's
 *     identity (MODEL_IDENTIFIER, MODEL_TOKEN);
 *   - a generated "model_spec.c" holding the variable table MODEL_VARIABLES[] and
 *     model_set_start_values();
 *   - the hand-written model source that defines `ModelData` (first member a
 *     `ModelVariables v`, then any hidden state), and implements model_init() and
 *     model_do_step().
 *
 * Rules for ModelData: plain old data only (no pointers), because the wrappers save and
 * restore FMU states with memcpy and serialize them byte for byte.
 *
 * Storage types: Real -> double, Integer -> int32_t, Boolean -> int32_t (0/1).
 */
#ifndef COSIM_MODEL_H
#define COSIM_MODEL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { VT_REAL, VT_INTEGER, VT_BOOLEAN } VarType;

typedef enum {
    CAUS_PARAMETER,
    CAUS_INPUT,
    CAUS_OUTPUT,
    CAUS_LOCAL,
    CAUS_INDEPENDENT
} VarCausality;

typedef enum {
    VARIAB_CONSTANT,
    VARIAB_FIXED,
    VARIAB_TUNABLE,
    VARIAB_DISCRETE,
    VARIAB_CONTINUOUS
} VarVariability;

/* One row of the variable table. `vr` equals the row index (value references are
 * assigned densely from 0 by the generator; vr 0 is always the independent `time`). */
typedef struct {
    uint32_t vr;
    const char *name;
    VarType type;
    VarCausality causality;
    VarVariability variability;
    size_t offset; /* offset of the field inside ModelVariables (== inside ModelData) */
} VarInfo;

/* Status a model function returns; mapped 1:1 onto fmi2Status / fmi3Status. */
typedef enum { MODEL_OK = 0, MODEL_WARNING = 1, MODEL_DISCARD = 2, MODEL_ERROR = 3 } ModelStatus;

/* Services the wrapper offers to the model during a call. */
typedef struct {
    void (*log)(void *wrapper, ModelStatus status, const char *category, const char *message);
    void *wrapper;
    int terminate_requested; /* set by the model (model_request_terminate) */
} ModelEnv;

static inline void model_logf(ModelEnv *env, ModelStatus status, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    const char *category;
    if (env == NULL || env->log == NULL) return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    switch (status) {
    case MODEL_OK: category = "logAll"; break;
    case MODEL_WARNING: category = "logStatusWarning"; break;
    case MODEL_DISCARD: category = "logStatusDiscard"; break;
    default: category = "logStatusError"; break;
    }
    env->log(env->wrapper, status, category, buf);
}

static inline void model_request_terminate(ModelEnv *env)
{
    if (env != NULL) env->terminate_requested = 1;
}

/* ---- provided by the generated model_spec.c ---- */
extern const VarInfo MODEL_VARIABLES[];
extern const size_t MODEL_N_VARIABLES;
extern const char MODEL_IDENTIFIER_STRING[];
extern const char MODEL_TOKEN_STRING[];
void model_set_start_values(void *data); /* writes the spec's start values */

/* ---- provided by the model source ---- */
extern const size_t MODEL_DATA_SIZE; /* sizeof(ModelData) */

/* Compute the initial state and outputs from parameters and inputs at `start_time`.
 * Called when leaving Initialization Mode and whenever outputs are read during it;
 * must therefore be idempotent. Return MODEL_ERROR (after logging) for invalid
 * parameters. */
ModelStatus model_init(void *data, double start_time, ModelEnv *env);

/* Advance the model from t to t + h (h > 0 and finite, any size) with inputs held
 * constant over the step (zero-order hold). `v.time` equals t on entry; the wrapper
 * sets it to t + h afterwards. On MODEL_DISCARD or MODEL_ERROR the wrapper restores the
 * model data to what it was before the call, so a model may return early freely. */
ModelStatus model_do_step(void *data, double t, double h, ModelEnv *env);

#endif /* COSIM_MODEL_H */
