/*
 * instance.c -- FMI-version independent instance logic: lifecycle, phase checks,
 * scalar get/set with causality/variability rules, doStep with rollback, FMU state
 * save/restore and (de)serialization.
 */
#include "instance.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SNAPSHOT_MAGIC 0x43534653u /* "CSFS" */
#define SERIAL_MAGIC 0x43534653u
#define SERIAL_VERSION 1u

/* ------------------------------------------------------------------------- logging */

void inst_log(Instance *inst, ModelStatus status, const char *fmt, ...)
{
    char buf[768];
    va_list ap;
    const char *category;
    if (inst == NULL || inst->emit == NULL) return;
    /* Problems are always reported; plain debug messages only when logging is on. */
    if (status == MODEL_OK && !inst->logging_on) return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    switch (status) {
    case MODEL_OK: category = "logAll"; break;
    case MODEL_WARNING: category = "logStatusWarning"; break;
    case MODEL_DISCARD: category = "logStatusDiscard"; break;
    default: category = "logStatusError"; break;
    }
    inst->emit(inst, status, category, buf);
}

/* Adapter handed to the model through ModelEnv. */
static void env_log(void *wrapper, ModelStatus status, const char *category, const char *message)
{
    Instance *inst = (Instance *)wrapper;
    if (inst == NULL || inst->emit == NULL) return;
    if (status == MODEL_OK && !inst->logging_on) return;
    inst->emit(inst, status, category, message);
}

static ModelEnv make_env(Instance *inst)
{
    ModelEnv env;
    env.log = env_log;
    env.wrapper = inst;
    env.terminate_requested = 0;
    return env;
}

static const char *phase_name(Phase p)
{
    switch (p) {
    case PHASE_INSTANTIATED: return "Instantiated";
    case PHASE_INIT: return "Initialization Mode";
    case PHASE_STEP: return "Step Mode";
    case PHASE_TERMINATED: return "Terminated";
    case PHASE_ERROR: return "Error";
    }
    return "?";
}

int inst_check_phase(Instance *inst, int allowed, const char *fname)
{
    if (inst == NULL) return 0;
    if ((int)inst->phase & allowed) return 1;
    inst_log(inst, MODEL_ERROR, "%s: not allowed in state %s.", fname, phase_name(inst->phase));
    return 0;
}

/* ------------------------------------------------------------------------- variables */

static double *time_field(const Instance *inst)
{
    return (double *)(inst->data + MODEL_VARIABLES[0].offset);
}

double inst_time(const Instance *inst) { return *time_field(inst); }

static void set_time(Instance *inst, double t) { *time_field(inst) = t; }

static const char *type_name(VarType t)
{
    switch (t) {
    case VT_REAL: return "Real";
    case VT_INTEGER: return "Integer";
    case VT_BOOLEAN: return "Boolean";
    }
    return "?";
}

static const VarInfo *lookup(Instance *inst, uint32_t vr, VarType type, const char *fname)
{
    const VarInfo *vi;
    if ((size_t)vr >= MODEL_N_VARIABLES) {
        inst_log(inst, MODEL_ERROR, "%s: unknown value reference %u.", fname, (unsigned)vr);
        return NULL;
    }
    vi = &MODEL_VARIABLES[vr];
    if (vi->type != type) {
        inst_log(inst, MODEL_ERROR, "%s: variable '%s' (vr %u) is of type %s, not %s.", fname,
                 vi->name, (unsigned)vr, type_name(vi->type), type_name(type));
        return NULL;
    }
    return vi;
}

/* Outputs are computed by model_init while the FMU is not yet stepping. */
static ModelStatus refresh_initial_outputs(Instance *inst, const VarInfo *vi)
{
    ModelStatus st;
    ModelEnv env;
    if (!(inst->phase & (PHASE_INSTANTIATED | PHASE_INIT))) return MODEL_OK;
    if (vi->causality != CAUS_OUTPUT && vi->causality != CAUS_LOCAL) return MODEL_OK;
    if (!inst->init_dirty) return MODEL_OK;
    env = make_env(inst);
    set_time(inst, inst->start_time);
    st = model_init(inst->data, inst->start_time, &env);
    if (st == MODEL_OK || st == MODEL_WARNING) inst->init_dirty = 0;
    return st;
}

static ModelStatus check_get(Instance *inst, const VarInfo *vi, const char *fname)
{
    ModelStatus st;
    if (vi == NULL) return MODEL_ERROR;
    st = refresh_initial_outputs(inst, vi);
    if (st > MODEL_WARNING)
        inst_log(inst, MODEL_ERROR, "%s: cannot compute initial value of '%s'.", fname, vi->name);
    return st;
}

static ModelStatus check_set(Instance *inst, const VarInfo *vi, const char *fname)
{
    int allowed = 0;
    if (vi == NULL) return MODEL_ERROR;
    switch (vi->causality) {
    case CAUS_INPUT:
        allowed = PHASE_INSTANTIATED | PHASE_INIT | PHASE_STEP;
        break;
    case CAUS_PARAMETER:
        if (vi->variability == VARIAB_TUNABLE)
            allowed = PHASE_INSTANTIATED | PHASE_INIT | PHASE_STEP;
        else if (vi->variability == VARIAB_FIXED)
            allowed = PHASE_INSTANTIATED | PHASE_INIT;
        break;
    default:
        allowed = 0;
        break;
    }
    if (allowed == 0) {
        inst_log(inst, MODEL_ERROR, "%s: variable '%s' cannot be set (it is not an input or parameter).",
                 fname, vi->name);
        return MODEL_ERROR;
    }
    if (!((int)inst->phase & allowed)) {
        inst_log(inst, MODEL_ERROR, "%s: variable '%s' cannot be set in state %s.", fname, vi->name,
                 phase_name(inst->phase));
        return MODEL_ERROR;
    }
    return MODEL_OK;
}

ModelStatus inst_get_real(Instance *inst, uint32_t vr, double *value, const char *fname)
{
    const VarInfo *vi = lookup(inst, vr, VT_REAL, fname);
    ModelStatus st = check_get(inst, vi, fname);
    if (st > MODEL_WARNING) return st;
    *value = *(const double *)(inst->data + vi->offset);
    return st;
}

ModelStatus inst_get_int(Instance *inst, uint32_t vr, int32_t *value, const char *fname)
{
    const VarInfo *vi = lookup(inst, vr, VT_INTEGER, fname);
    ModelStatus st = check_get(inst, vi, fname);
    if (st > MODEL_WARNING) return st;
    *value = *(const int32_t *)(inst->data + vi->offset);
    return st;
}

ModelStatus inst_get_bool(Instance *inst, uint32_t vr, int *value, const char *fname)
{
    const VarInfo *vi = lookup(inst, vr, VT_BOOLEAN, fname);
    ModelStatus st = check_get(inst, vi, fname);
    if (st > MODEL_WARNING) return st;
    *value = *(const int32_t *)(inst->data + vi->offset) != 0;
    return st;
}

ModelStatus inst_set_real(Instance *inst, uint32_t vr, double value, const char *fname)
{
    const VarInfo *vi = lookup(inst, vr, VT_REAL, fname);
    if (check_set(inst, vi, fname) != MODEL_OK) return MODEL_ERROR;
    if (!isfinite(value)) {
        inst_log(inst, MODEL_ERROR, "%s: refusing non-finite value for '%s'.", fname, vi->name);
        return MODEL_ERROR;
    }
    *(double *)(inst->data + vi->offset) = value;
    inst->init_dirty = 1;
    return MODEL_OK;
}

ModelStatus inst_set_int(Instance *inst, uint32_t vr, int32_t value, const char *fname)
{
    const VarInfo *vi = lookup(inst, vr, VT_INTEGER, fname);
    if (check_set(inst, vi, fname) != MODEL_OK) return MODEL_ERROR;
    *(int32_t *)(inst->data + vi->offset) = value;
    inst->init_dirty = 1;
    return MODEL_OK;
}

ModelStatus inst_set_bool(Instance *inst, uint32_t vr, int value, const char *fname)
{
    const VarInfo *vi = lookup(inst, vr, VT_BOOLEAN, fname);
    if (check_set(inst, vi, fname) != MODEL_OK) return MODEL_ERROR;
    *(int32_t *)(inst->data + vi->offset) = value ? 1 : 0;
    inst->init_dirty = 1;
    return MODEL_OK;
}

/* ------------------------------------------------------------------------- lifecycle */

static void load_defaults(Instance *inst)
{
    memset(inst->data, 0, MODEL_DATA_SIZE);
    model_set_start_values(inst->data);
    inst->phase = PHASE_INSTANTIATED;
    inst->init_dirty = 1;
    inst->terminated = 0;
    inst->start_time = 0.0;
    inst->last_successful_time = 0.0;
    inst->last_step_status = MODEL_OK;
    set_time(inst, 0.0);
}

Instance *instance_new(const char *name, EmitFn emit, void *emit_ctx, int logging_on)
{
    Instance *inst = (Instance *)calloc(1, sizeof(Instance));
    if (inst == NULL) return NULL;
    inst->name = (char *)malloc(strlen(name ? name : "") + 1);
    inst->data = (unsigned char *)calloc(1, MODEL_DATA_SIZE);
    inst->backup = (unsigned char *)calloc(1, MODEL_DATA_SIZE);
    if (inst->name == NULL || inst->data == NULL || inst->backup == NULL) {
        instance_free(inst);
        return NULL;
    }
    strcpy(inst->name, name ? name : "");
    inst->emit = emit;
    inst->emit_ctx = emit_ctx;
    inst->logging_on = logging_on;
    load_defaults(inst);
    return inst;
}

void instance_free(Instance *inst)
{
    if (inst == NULL) return;
    free(inst->name);
    free(inst->data);
    free(inst->backup);
    free(inst);
}

void instance_reset(Instance *inst) { load_defaults(inst); }

ModelStatus inst_enter_init(Instance *inst, double start_time)
{
    if (!inst_check_phase(inst, PHASE_INSTANTIATED, "EnterInitializationMode")) return MODEL_ERROR;
    if (!isfinite(start_time)) {
        inst_log(inst, MODEL_ERROR, "EnterInitializationMode: start time is not finite.");
        return MODEL_ERROR;
    }
    inst->start_time = start_time;
    set_time(inst, start_time);
    inst->init_dirty = 1;
    inst->phase = PHASE_INIT;
    return MODEL_OK;
}

ModelStatus inst_exit_init(Instance *inst)
{
    ModelEnv env;
    ModelStatus st;
    if (!inst_check_phase(inst, PHASE_INIT, "ExitInitializationMode")) return MODEL_ERROR;
    env = make_env(inst);
    set_time(inst, inst->start_time);
    st = model_init(inst->data, inst->start_time, &env);
    if (st > MODEL_WARNING) {
        inst_log(inst, MODEL_ERROR, "ExitInitializationMode: model initialization failed.");
        inst->phase = PHASE_ERROR;
        return MODEL_ERROR;
    }
    inst->init_dirty = 0;
    inst->last_successful_time = inst->start_time;
    inst->phase = PHASE_STEP;
    return st;
}

ModelStatus inst_terminate(Instance *inst)
{
    if (!inst_check_phase(inst, PHASE_INIT | PHASE_STEP | PHASE_TERMINATED | PHASE_ERROR, "Terminate"))
        return MODEL_ERROR;
    inst->phase = PHASE_TERMINATED;
    return MODEL_OK;
}

/* ------------------------------------------------------------------------- stepping */

ModelStatus inst_do_step(Instance *inst, double t, double h, const char *fname)
{
    ModelEnv env;
    ModelStatus st;
    double now, tol;
    if (!inst_check_phase(inst, PHASE_STEP, fname)) return MODEL_ERROR;
    if (!isfinite(t) || !isfinite(h) || !(h > 0.0)) {
        inst_log(inst, MODEL_ERROR, "%s: invalid step (currentCommunicationPoint=%g, step size=%g); "
                 "the step size must be finite and > 0.", fname, t, h);
        return MODEL_ERROR;
    }
    if (inst->terminated) {
        inst_log(inst, MODEL_DISCARD, "%s: the model has requested termination at t=%g; no further steps.",
                 fname, inst->last_successful_time);
        return MODEL_DISCARD;
    }
    now = inst_time(inst);
    tol = 1e-9 * (fabs(now) > 1.0 ? fabs(now) : 1.0);
    if (fabs(t - now) > tol) {
        inst_log(inst, MODEL_ERROR, "%s: currentCommunicationPoint=%.17g does not match the FMU time %.17g.",
                 fname, t, now);
        return MODEL_ERROR;
    }
    memcpy(inst->backup, inst->data, MODEL_DATA_SIZE);
    set_time(inst, t); /* the importer's grid is authoritative */
    env = make_env(inst);
    st = model_do_step(inst->data, t, h, &env);
    inst->last_step_status = st;
    switch (st) {
    case MODEL_OK:
    case MODEL_WARNING:
        set_time(inst, t + h);
        inst->last_successful_time = t + h;
        break;
    case MODEL_DISCARD:
        memcpy(inst->data, inst->backup, MODEL_DATA_SIZE);
        inst->last_successful_time = t;
        if (env.terminate_requested) inst->terminated = 1;
        break;
    default:
        memcpy(inst->data, inst->backup, MODEL_DATA_SIZE);
        inst->last_successful_time = t;
        inst->phase = PHASE_ERROR;
        st = MODEL_ERROR;
        break;
    }
    return st;
}

/* ------------------------------------------------------------------------- FMU state */

static int valid_snapshot(Instance *inst, const Snapshot *s, const char *fname)
{
    if (s == NULL || s->magic != SNAPSHOT_MAGIC) {
        inst_log(inst, MODEL_ERROR, "%s: invalid FMU state handle.", fname);
        return 0;
    }
    return 1;
}

ModelStatus inst_get_state(Instance *inst, Snapshot **state, const char *fname)
{
    Snapshot *s;
    if (state == NULL) {
        inst_log(inst, MODEL_ERROR, "%s: FMUstate pointer is NULL.", fname);
        return MODEL_ERROR;
    }
    s = *state;
    if (s != NULL) {
        if (!valid_snapshot(inst, s, fname)) return MODEL_ERROR; /* re-use the given state */
    } else {
        s = (Snapshot *)malloc(sizeof(Snapshot) + MODEL_DATA_SIZE);
        if (s == NULL) {
            inst_log(inst, MODEL_ERROR, "%s: out of memory.", fname);
            return MODEL_ERROR;
        }
    }
    s->magic = SNAPSHOT_MAGIC;
    s->phase = inst->phase;
    s->init_dirty = inst->init_dirty;
    s->terminated = inst->terminated;
    s->start_time = inst->start_time;
    s->last_successful_time = inst->last_successful_time;
    s->last_step_status = inst->last_step_status;
    memcpy(s->data, inst->data, MODEL_DATA_SIZE);
    *state = s;
    return MODEL_OK;
}

ModelStatus inst_set_state(Instance *inst, const Snapshot *s, const char *fname)
{
    if (!valid_snapshot(inst, s, fname)) return MODEL_ERROR;
    inst->phase = s->phase;
    inst->init_dirty = s->init_dirty;
    inst->terminated = s->terminated;
    inst->start_time = s->start_time;
    inst->last_successful_time = s->last_successful_time;
    inst->last_step_status = s->last_step_status;
    memcpy(inst->data, s->data, MODEL_DATA_SIZE);
    return MODEL_OK;
}

ModelStatus inst_free_state(Instance *inst, Snapshot **state, const char *fname)
{
    if (state == NULL || *state == NULL) return MODEL_OK;
    if (!valid_snapshot(inst, *state, fname)) return MODEL_ERROR;
    (*state)->magic = 0;
    free(*state);
    *state = NULL;
    return MODEL_OK;
}

/* Serialized layout (native byte order, the state is only meant for this platform):
 *   u32 magic, u32 format version, u32 token length, token bytes,
 *   u64 model data size, i32 phase, i32 init_dirty, i32 terminated, i32 last_step_status,
 *   f64 start_time, f64 last_successful_time, model data bytes. */
size_t inst_serialized_size(void)
{
    return 3 * sizeof(uint32_t) + strlen(MODEL_TOKEN_STRING) + sizeof(uint64_t) + 4 * sizeof(int32_t) +
           2 * sizeof(double) + MODEL_DATA_SIZE;
}

#define PUT(ptr, val)                        \
    do {                                     \
        memcpy((ptr), &(val), sizeof(val));  \
        (ptr) += sizeof(val);                \
    } while (0)
#define TAKE(ptr, var)                       \
    do {                                     \
        memcpy(&(var), (ptr), sizeof(var));  \
        (ptr) += sizeof(var);                \
    } while (0)

ModelStatus inst_serialize(Instance *inst, const Snapshot *s, unsigned char *buf, size_t size,
                           const char *fname)
{
    unsigned char *p = buf;
    uint32_t magic = SERIAL_MAGIC, version = SERIAL_VERSION;
    uint32_t toklen = (uint32_t)strlen(MODEL_TOKEN_STRING);
    uint64_t dsize = (uint64_t)MODEL_DATA_SIZE;
    int32_t phase, dirty, term, lss;
    if (!valid_snapshot(inst, s, fname)) return MODEL_ERROR;
    if (buf == NULL || size < inst_serialized_size()) {
        inst_log(inst, MODEL_ERROR, "%s: buffer too small (%lu bytes, need %lu).", fname,
                 (unsigned long)size, (unsigned long)inst_serialized_size());
        return MODEL_ERROR;
    }
    phase = (int32_t)s->phase;
    dirty = s->init_dirty;
    term = s->terminated;
    lss = (int32_t)s->last_step_status;
    PUT(p, magic);
    PUT(p, version);
    PUT(p, toklen);
    memcpy(p, MODEL_TOKEN_STRING, toklen);
    p += toklen;
    PUT(p, dsize);
    PUT(p, phase);
    PUT(p, dirty);
    PUT(p, term);
    PUT(p, lss);
    PUT(p, s->start_time);
    PUT(p, s->last_successful_time);
    memcpy(p, s->data, MODEL_DATA_SIZE);
    return MODEL_OK;
}

ModelStatus inst_deserialize(Instance *inst, const unsigned char *buf, size_t size, Snapshot **state,
                             const char *fname)
{
    const unsigned char *p = buf;
    uint32_t magic, version, toklen;
    uint64_t dsize;
    int32_t phase, dirty, term, lss;
    double start_time, lst;
    Snapshot *s;
    if (state == NULL || buf == NULL || size != inst_serialized_size()) {
        inst_log(inst, MODEL_ERROR, "%s: serialized state has the wrong size (%lu bytes, expected %lu).",
                 fname, (unsigned long)size, (unsigned long)inst_serialized_size());
        return MODEL_ERROR;
    }
    TAKE(p, magic);
    TAKE(p, version);
    TAKE(p, toklen);
    if (magic != SERIAL_MAGIC || version != SERIAL_VERSION || toklen != strlen(MODEL_TOKEN_STRING) ||
        memcmp(p, MODEL_TOKEN_STRING, toklen) != 0) {
        inst_log(inst, MODEL_ERROR, "%s: serialized state does not belong to this model (%s).", fname,
                 MODEL_IDENTIFIER_STRING);
        return MODEL_ERROR;
    }
    p += toklen;
    TAKE(p, dsize);
    if (dsize != (uint64_t)MODEL_DATA_SIZE) {
        inst_log(inst, MODEL_ERROR, "%s: serialized state has a different layout.", fname);
        return MODEL_ERROR;
    }
    TAKE(p, phase);
    TAKE(p, dirty);
    TAKE(p, term);
    TAKE(p, lss);
    TAKE(p, start_time);
    TAKE(p, lst);
    if (!(phase == PHASE_INSTANTIATED || phase == PHASE_INIT || phase == PHASE_STEP ||
          phase == PHASE_TERMINATED || phase == PHASE_ERROR)) {
        inst_log(inst, MODEL_ERROR, "%s: serialized state is corrupt.", fname);
        return MODEL_ERROR;
    }
    s = *state;
    if (s != NULL) {
        if (!valid_snapshot(inst, s, fname)) return MODEL_ERROR;
    } else {
        s = (Snapshot *)malloc(sizeof(Snapshot) + MODEL_DATA_SIZE);
        if (s == NULL) {
            inst_log(inst, MODEL_ERROR, "%s: out of memory.", fname);
            return MODEL_ERROR;
        }
    }
    s->magic = SNAPSHOT_MAGIC;
    s->phase = (Phase)phase;
    s->init_dirty = dirty;
    s->terminated = term;
    s->last_step_status = (ModelStatus)lss;
    s->start_time = start_time;
    s->last_successful_time = lst;
    memcpy(s->data, p, MODEL_DATA_SIZE);
    *state = s;
    return MODEL_OK;
}

ModelStatus inst_unsupported(Instance *inst, const char *fname)
{
    inst_log(inst, MODEL_ERROR, "%s is not supported by %s (a co-simulation FMU without this capability).",
             fname, MODEL_IDENTIFIER_STRING);
    return MODEL_ERROR;
}
