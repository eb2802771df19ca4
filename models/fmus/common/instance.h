/*
 * instance.h -- FMI-version independent part of an FMU instance.
 *
 * Both wrappers (fmi2_wrapper.c, fmi3_wrapper.c) keep one `Instance` per FMU instance and
 * translate FMI calls into the functions below. Everything here speaks the model
 * interface of model.h; the wrappers only convert types, statuses and callbacks.
 */
#ifndef COSIM_INSTANCE_H
#define COSIM_INSTANCE_H

#include "model.h"

typedef enum {
    PHASE_INSTANTIATED = 1 << 0,
    PHASE_INIT = 1 << 1,       /* Initialization Mode */
    PHASE_STEP = 1 << 2,       /* slaveInitialized (FMI 2.0) / Step Mode (FMI 3.0) */
    PHASE_TERMINATED = 1 << 3,
    PHASE_ERROR = 1 << 4
} Phase;

#define PHASE_ANY (PHASE_INSTANTIATED | PHASE_INIT | PHASE_STEP | PHASE_TERMINATED | PHASE_ERROR)

struct Instance;
typedef void (*EmitFn)(struct Instance *inst, ModelStatus status, const char *category,
                       const char *message);

typedef struct Instance {
    char *name;
    unsigned char *data;    /* MODEL_DATA_SIZE bytes: ModelVariables + hidden state */
    unsigned char *backup;  /* scratch copy used to roll back a failed step */
    Phase phase;
    int logging_on;
    int init_dirty;         /* parameters/inputs changed since the last model_init */
    int terminated;         /* the model requested the end of the simulation */
    double start_time;
    double last_successful_time;
    ModelStatus last_step_status;
    EmitFn emit;            /* FMI-version specific logger adapter */
    void *emit_ctx;
} Instance;

/* A saved FMU state (FMUstate handle). */
typedef struct {
    uint32_t magic;
    Phase phase;
    int init_dirty;
    int terminated;
    double start_time;
    double last_successful_time;
    ModelStatus last_step_status;
    unsigned char data[]; /* MODEL_DATA_SIZE bytes */
} Snapshot;

Instance *instance_new(const char *name, EmitFn emit, void *emit_ctx, int logging_on);
void instance_free(Instance *inst);
void instance_reset(Instance *inst);

void inst_log(Instance *inst, ModelStatus status, const char *fmt, ...);
int inst_check_phase(Instance *inst, int allowed, const char *fname);
double inst_time(const Instance *inst);

ModelStatus inst_enter_init(Instance *inst, double start_time);
ModelStatus inst_exit_init(Instance *inst);
ModelStatus inst_terminate(Instance *inst);

/* Scalar access; `fname` names the FMI call in error messages. */
ModelStatus inst_get_real(Instance *inst, uint32_t vr, double *value, const char *fname);
ModelStatus inst_get_int(Instance *inst, uint32_t vr, int32_t *value, const char *fname);
ModelStatus inst_get_bool(Instance *inst, uint32_t vr, int *value, const char *fname);
ModelStatus inst_set_real(Instance *inst, uint32_t vr, double value, const char *fname);
ModelStatus inst_set_int(Instance *inst, uint32_t vr, int32_t value, const char *fname);
ModelStatus inst_set_bool(Instance *inst, uint32_t vr, int value, const char *fname);

ModelStatus inst_do_step(Instance *inst, double t, double h, const char *fname);

/* FMU state */
ModelStatus inst_get_state(Instance *inst, Snapshot **state, const char *fname);
ModelStatus inst_set_state(Instance *inst, const Snapshot *state, const char *fname);
ModelStatus inst_free_state(Instance *inst, Snapshot **state, const char *fname);
size_t inst_serialized_size(void);
ModelStatus inst_serialize(Instance *inst, const Snapshot *state, unsigned char *buf, size_t size,
                           const char *fname);
ModelStatus inst_deserialize(Instance *inst, const unsigned char *buf, size_t size, Snapshot **state,
                             const char *fname);

/* Uniform answer for FMI functions this scaffold does not provide. */
ModelStatus inst_unsupported(Instance *inst, const char *fname);

#endif /* COSIM_INSTANCE_H */
