/*
 * fmi2_wrapper.c -- FMI 2.0 Co-Simulation interface over the model interface (model.h).
 *
 * Every function of the FMI 2.0 API is exported. Model Exchange functions and the
 * optional capabilities not declared in modelDescription.xml return fmi2Error after
 * logging why. Capabilities: canHandleVariableCommunicationStepSize, canGetAndSetFMUstate,
 * canSerializeFMUstate.
 */
#include <stdlib.h>
#include <string.h>

#include "fmi2Functions.h"
#include "instance.h"

typedef struct {
    Instance *inst;             /* must stay the first member */
    fmi2CallbackFunctions cb;
} Fmi2Instance;

static fmi2Status to_fmi2(ModelStatus st)
{
    switch (st) {
    case MODEL_OK: return fmi2OK;
    case MODEL_WARNING: return fmi2Warning;
    case MODEL_DISCARD: return fmi2Discard;
    default: return fmi2Error;
    }
}

static void emit2(Instance *inst, ModelStatus status, const char *category, const char *message)
{
    Fmi2Instance *w = (Fmi2Instance *)inst->emit_ctx;
    char escaped[1600];
    size_t i, j = 0;
    if (w == NULL || w->cb.logger == NULL) return;
    /* The FMI 2.0 logger treats `message` as a printf format: escape '%'. */
    for (i = 0; message[i] != '\0' && j + 2 < sizeof escaped; i++) {
        if (message[i] == '%') escaped[j++] = '%';
        escaped[j++] = message[i];
    }
    escaped[j] = '\0';
    w->cb.logger(w->cb.componentEnvironment, inst->name, to_fmi2(status), category, escaped);
}

#define INST(c) (((Fmi2Instance *)(c))->inst)

#define CHECK_COMPONENT(c)        \
    do {                          \
        if ((c) == NULL) return fmi2Error; \
    } while (0)

/* ------------------------------------------------------------------ common functions */

const char *fmi2GetTypesPlatform(void) { return fmi2TypesPlatform; }

const char *fmi2GetVersion(void) { return fmi2Version; }

fmi2Status fmi2SetDebugLogging(fmi2Component c, fmi2Boolean loggingOn, size_t nCategories,
                               const fmi2String categories[])
{
    size_t i;
    CHECK_COMPONENT(c);
    for (i = 0; i < nCategories; i++) {
        const char *cat = categories[i];
        if (cat == NULL || (strcmp(cat, "logAll") != 0 && strcmp(cat, "logStatusWarning") != 0 &&
                            strcmp(cat, "logStatusDiscard") != 0 && strcmp(cat, "logStatusError") != 0)) {
            inst_log(INST(c), MODEL_ERROR, "fmi2SetDebugLogging: unknown log category '%s'.",
                     cat ? cat : "(null)");
            return fmi2Error;
        }
    }
    INST(c)->logging_on = loggingOn ? 1 : 0;
    return fmi2OK;
}

fmi2Component fmi2Instantiate(fmi2String instanceName, fmi2Type fmuType, fmi2String fmuGUID,
                              fmi2String fmuResourceLocation, const fmi2CallbackFunctions *functions,
                              fmi2Boolean visible, fmi2Boolean loggingOn)
{
    Fmi2Instance *w;
    const char *name = instanceName ? instanceName : "";
    (void)fmuResourceLocation;
    (void)visible;
    if (functions == NULL) return NULL;
    w = (Fmi2Instance *)calloc(1, sizeof(Fmi2Instance));
    if (w == NULL) return NULL;
    w->cb = *functions;
    w->inst = instance_new(name, emit2, w, loggingOn ? 1 : 0);
    if (w->inst == NULL) {
        if (functions->logger)
            functions->logger(functions->componentEnvironment, name, fmi2Error, "logStatusError",
                              "fmi2Instantiate: out of memory.");
        free(w);
        return NULL;
    }
    if (fmuType != fmi2CoSimulation) {
        inst_log(w->inst, MODEL_ERROR, "fmi2Instantiate: %s supports Co-Simulation only.",
                 MODEL_IDENTIFIER_STRING);
        instance_free(w->inst);
        free(w);
        return NULL;
    }
    if (fmuGUID == NULL || strcmp(fmuGUID, MODEL_TOKEN_STRING) != 0) {
        inst_log(w->inst, MODEL_ERROR, "fmi2Instantiate: GUID '%s' does not match this binary ('%s').",
                 fmuGUID ? fmuGUID : "(null)", MODEL_TOKEN_STRING);
        instance_free(w->inst);
        free(w);
        return NULL;
    }
    return (fmi2Component)w;
}

void fmi2FreeInstance(fmi2Component c)
{
    Fmi2Instance *w = (Fmi2Instance *)c;
    if (w == NULL) return;
    instance_free(w->inst);
    free(w);
}

fmi2Status fmi2SetupExperiment(fmi2Component c, fmi2Boolean toleranceDefined, fmi2Real tolerance,
                               fmi2Real startTime, fmi2Boolean stopTimeDefined, fmi2Real stopTime)
{
    Instance *inst;
    (void)toleranceDefined;
    (void)tolerance;
    (void)stopTimeDefined;
    (void)stopTime;
    CHECK_COMPONENT(c);
    inst = INST(c);
    if (!inst_check_phase(inst, PHASE_INSTANTIATED, "fmi2SetupExperiment")) return fmi2Error;
    inst->start_time = startTime;
    return fmi2OK;
}

fmi2Status fmi2EnterInitializationMode(fmi2Component c)
{
    CHECK_COMPONENT(c);
    return to_fmi2(inst_enter_init(INST(c), INST(c)->start_time));
}

fmi2Status fmi2ExitInitializationMode(fmi2Component c)
{
    CHECK_COMPONENT(c);
    return to_fmi2(inst_exit_init(INST(c)));
}

fmi2Status fmi2Terminate(fmi2Component c)
{
    CHECK_COMPONENT(c);
    return to_fmi2(inst_terminate(INST(c)));
}

fmi2Status fmi2Reset(fmi2Component c)
{
    CHECK_COMPONENT(c);
    instance_reset(INST(c));
    return fmi2OK;
}

/* ------------------------------------------------------------------ get / set */

fmi2Status fmi2GetReal(fmi2Component c, const fmi2ValueReference vr[], size_t nvr, fmi2Real value[])
{
    size_t i;
    ModelStatus worst = MODEL_OK, st;
    CHECK_COMPONENT(c);
    if (nvr > 0 && (vr == NULL || value == NULL)) return fmi2Error;
    for (i = 0; i < nvr; i++) {
        st = inst_get_real(INST(c), vr[i], &value[i], "fmi2GetReal");
        if (st > MODEL_WARNING) return to_fmi2(st);
        if (st > worst) worst = st;
    }
    return to_fmi2(worst);
}

fmi2Status fmi2GetInteger(fmi2Component c, const fmi2ValueReference vr[], size_t nvr, fmi2Integer value[])
{
    size_t i;
    int32_t v;
    ModelStatus worst = MODEL_OK, st;
    CHECK_COMPONENT(c);
    if (nvr > 0 && (vr == NULL || value == NULL)) return fmi2Error;
    for (i = 0; i < nvr; i++) {
        st = inst_get_int(INST(c), vr[i], &v, "fmi2GetInteger");
        if (st > MODEL_WARNING) return to_fmi2(st);
        value[i] = (fmi2Integer)v;
        if (st > worst) worst = st;
    }
    return to_fmi2(worst);
}

fmi2Status fmi2GetBoolean(fmi2Component c, const fmi2ValueReference vr[], size_t nvr, fmi2Boolean value[])
{
    size_t i;
    int v;
    ModelStatus worst = MODEL_OK, st;
    CHECK_COMPONENT(c);
    if (nvr > 0 && (vr == NULL || value == NULL)) return fmi2Error;
    for (i = 0; i < nvr; i++) {
        st = inst_get_bool(INST(c), vr[i], &v, "fmi2GetBoolean");
        if (st > MODEL_WARNING) return to_fmi2(st);
        value[i] = v ? fmi2True : fmi2False;
        if (st > worst) worst = st;
    }
    return to_fmi2(worst);
}

fmi2Status fmi2GetString(fmi2Component c, const fmi2ValueReference vr[], size_t nvr, fmi2String value[])
{
    (void)vr;
    (void)value;
    CHECK_COMPONENT(c);
    if (nvr == 0) return fmi2OK;
    inst_log(INST(c), MODEL_ERROR, "fmi2GetString: %s has no String variables.", MODEL_IDENTIFIER_STRING);
    return fmi2Error;
}

fmi2Status fmi2SetReal(fmi2Component c, const fmi2ValueReference vr[], size_t nvr, const fmi2Real value[])
{
    size_t i;
    CHECK_COMPONENT(c);
    if (nvr > 0 && (vr == NULL || value == NULL)) return fmi2Error;
    for (i = 0; i < nvr; i++)
        if (inst_set_real(INST(c), vr[i], value[i], "fmi2SetReal") != MODEL_OK) return fmi2Error;
    return fmi2OK;
}

fmi2Status fmi2SetInteger(fmi2Component c, const fmi2ValueReference vr[], size_t nvr,
                          const fmi2Integer value[])
{
    size_t i;
    CHECK_COMPONENT(c);
    if (nvr > 0 && (vr == NULL || value == NULL)) return fmi2Error;
    for (i = 0; i < nvr; i++)
        if (inst_set_int(INST(c), vr[i], (int32_t)value[i], "fmi2SetInteger") != MODEL_OK) return fmi2Error;
    return fmi2OK;
}

fmi2Status fmi2SetBoolean(fmi2Component c, const fmi2ValueReference vr[], size_t nvr,
                          const fmi2Boolean value[])
{
    size_t i;
    CHECK_COMPONENT(c);
    if (nvr > 0 && (vr == NULL || value == NULL)) return fmi2Error;
    for (i = 0; i < nvr; i++)
        if (inst_set_bool(INST(c), vr[i], value[i] != fmi2False, "fmi2SetBoolean") != MODEL_OK) return fmi2Error;
    return fmi2OK;
}

fmi2Status fmi2SetString(fmi2Component c, const fmi2ValueReference vr[], size_t nvr, const fmi2String value[])
{
    (void)vr;
    (void)value;
    CHECK_COMPONENT(c);
    if (nvr == 0) return fmi2OK;
    inst_log(INST(c), MODEL_ERROR, "fmi2SetString: %s has no String variables.", MODEL_IDENTIFIER_STRING);
    return fmi2Error;
}

/* ------------------------------------------------------------------ FMU state */

fmi2Status fmi2GetFMUstate(fmi2Component c, fmi2FMUstate *FMUstate)
{
    CHECK_COMPONENT(c);
    return to_fmi2(inst_get_state(INST(c), (Snapshot **)FMUstate, "fmi2GetFMUstate"));
}

fmi2Status fmi2SetFMUstate(fmi2Component c, fmi2FMUstate FMUstate)
{
    CHECK_COMPONENT(c);
    return to_fmi2(inst_set_state(INST(c), (const Snapshot *)FMUstate, "fmi2SetFMUstate"));
}

fmi2Status fmi2FreeFMUstate(fmi2Component c, fmi2FMUstate *FMUstate)
{
    CHECK_COMPONENT(c);
    return to_fmi2(inst_free_state(INST(c), (Snapshot **)FMUstate, "fmi2FreeFMUstate"));
}

fmi2Status fmi2SerializedFMUstateSize(fmi2Component c, fmi2FMUstate FMUstate, size_t *size)
{
    CHECK_COMPONENT(c);
    (void)FMUstate;
    if (size == NULL) return fmi2Error;
    *size = inst_serialized_size();
    return fmi2OK;
}

fmi2Status fmi2SerializeFMUstate(fmi2Component c, fmi2FMUstate FMUstate, fmi2Byte serializedState[],
                                 size_t size)
{
    CHECK_COMPONENT(c);
    return to_fmi2(inst_serialize(INST(c), (const Snapshot *)FMUstate, (unsigned char *)serializedState, size,
                                  "fmi2SerializeFMUstate"));
}

fmi2Status fmi2DeSerializeFMUstate(fmi2Component c, const fmi2Byte serializedState[], size_t size,
                                   fmi2FMUstate *FMUstate)
{
    CHECK_COMPONENT(c);
    return to_fmi2(inst_deserialize(INST(c), (const unsigned char *)serializedState, size,
                                    (Snapshot **)FMUstate, "fmi2DeSerializeFMUstate"));
}

fmi2Status fmi2GetDirectionalDerivative(fmi2Component c, const fmi2ValueReference vUnknown_ref[],
                                        size_t nUnknown, const fmi2ValueReference vKnown_ref[], size_t nKnown,
                                        const fmi2Real dvKnown[], fmi2Real dvUnknown[])
{
    (void)vUnknown_ref;
    (void)nUnknown;
    (void)vKnown_ref;
    (void)nKnown;
    (void)dvKnown;
    (void)dvUnknown;
    CHECK_COMPONENT(c);
    return to_fmi2(inst_unsupported(INST(c), "fmi2GetDirectionalDerivative"));
}

/* ------------------------------------------------------------------ Model Exchange (unsupported) */

fmi2Status fmi2EnterEventMode(fmi2Component c)
{
    CHECK_COMPONENT(c);
    return to_fmi2(inst_unsupported(INST(c), "fmi2EnterEventMode"));
}

fmi2Status fmi2NewDiscreteStates(fmi2Component c, fmi2EventInfo *eventInfo)
{
    (void)eventInfo;
    CHECK_COMPONENT(c);
    return to_fmi2(inst_unsupported(INST(c), "fmi2NewDiscreteStates"));
}

fmi2Status fmi2EnterContinuousTimeMode(fmi2Component c)
{
    CHECK_COMPONENT(c);
    return to_fmi2(inst_unsupported(INST(c), "fmi2EnterContinuousTimeMode"));
}

fmi2Status fmi2CompletedIntegratorStep(fmi2Component c, fmi2Boolean noSetFMUStatePriorToCurrentPoint,
                                       fmi2Boolean *enterEventMode, fmi2Boolean *terminateSimulation)
{
    (void)noSetFMUStatePriorToCurrentPoint;
    (void)enterEventMode;
    (void)terminateSimulation;
    CHECK_COMPONENT(c);
    return to_fmi2(inst_unsupported(INST(c), "fmi2CompletedIntegratorStep"));
}

fmi2Status fmi2SetTime(fmi2Component c, fmi2Real time)
{
    (void)time;
    CHECK_COMPONENT(c);
    return to_fmi2(inst_unsupported(INST(c), "fmi2SetTime"));
}

fmi2Status fmi2SetContinuousStates(fmi2Component c, const fmi2Real x[], size_t nx)
{
    (void)x;
    (void)nx;
    CHECK_COMPONENT(c);
    return to_fmi2(inst_unsupported(INST(c), "fmi2SetContinuousStates"));
}

fmi2Status fmi2GetDerivatives(fmi2Component c, fmi2Real derivatives[], size_t nx)
{
    (void)derivatives;
    (void)nx;
    CHECK_COMPONENT(c);
    return to_fmi2(inst_unsupported(INST(c), "fmi2GetDerivatives"));
}

fmi2Status fmi2GetEventIndicators(fmi2Component c, fmi2Real eventIndicators[], size_t ni)
{
    (void)eventIndicators;
    (void)ni;
    CHECK_COMPONENT(c);
    return to_fmi2(inst_unsupported(INST(c), "fmi2GetEventIndicators"));
}

fmi2Status fmi2GetContinuousStates(fmi2Component c, fmi2Real x[], size_t nx)
{
    (void)x;
    (void)nx;
    CHECK_COMPONENT(c);
    return to_fmi2(inst_unsupported(INST(c), "fmi2GetContinuousStates"));
}

fmi2Status fmi2GetNominalsOfContinuousStates(fmi2Component c, fmi2Real x_nominal[], size_t nx)
{
    (void)x_nominal;
    (void)nx;
    CHECK_COMPONENT(c);
    return to_fmi2(inst_unsupported(INST(c), "fmi2GetNominalsOfContinuousStates"));
}

/* ------------------------------------------------------------------ Co-Simulation */

fmi2Status fmi2SetRealInputDerivatives(fmi2Component c, const fmi2ValueReference vr[], size_t nvr,
                                       const fmi2Integer order[], const fmi2Real value[])
{
    (void)vr;
    (void)nvr;
    (void)order;
    (void)value;
    CHECK_COMPONENT(c);
    return to_fmi2(inst_unsupported(INST(c), "fmi2SetRealInputDerivatives"));
}

fmi2Status fmi2GetRealOutputDerivatives(fmi2Component c, const fmi2ValueReference vr[], size_t nvr,
                                        const fmi2Integer order[], fmi2Real value[])
{
    (void)vr;
    (void)nvr;
    (void)order;
    (void)value;
    CHECK_COMPONENT(c);
    return to_fmi2(inst_unsupported(INST(c), "fmi2GetRealOutputDerivatives"));
}

fmi2Status fmi2DoStep(fmi2Component c, fmi2Real currentCommunicationPoint, fmi2Real communicationStepSize,
                      fmi2Boolean noSetFMUStatePriorToCurrentPoint)
{
    (void)noSetFMUStatePriorToCurrentPoint;
    CHECK_COMPONENT(c);
    return to_fmi2(inst_do_step(INST(c), currentCommunicationPoint, communicationStepSize, "fmi2DoStep"));
}

fmi2Status fmi2CancelStep(fmi2Component c)
{
    CHECK_COMPONENT(c);
    /* doStep always completes synchronously, so there is never a step to cancel. */
    inst_log(INST(c), MODEL_ERROR, "fmi2CancelStep: no asynchronous step is pending.");
    return fmi2Error;
}

fmi2Status fmi2GetStatus(fmi2Component c, const fmi2StatusKind s, fmi2Status *value)
{
    CHECK_COMPONENT(c);
    if (value == NULL) return fmi2Error;
    if (s == fmi2DoStepStatus) {
        /* Only meaningful for asynchronous steps, which this FMU never performs. */
        *value = to_fmi2(INST(c)->last_step_status);
        return fmi2OK;
    }
    inst_log(INST(c), MODEL_DISCARD, "fmi2GetStatus: status kind %d is not provided.", (int)s);
    return fmi2Discard;
}

fmi2Status fmi2GetRealStatus(fmi2Component c, const fmi2StatusKind s, fmi2Real *value)
{
    CHECK_COMPONENT(c);
    if (value == NULL) return fmi2Error;
    if (s == fmi2LastSuccessfulTime) {
        *value = INST(c)->last_successful_time;
        return fmi2OK;
    }
    inst_log(INST(c), MODEL_DISCARD, "fmi2GetRealStatus: status kind %d is not provided.", (int)s);
    return fmi2Discard;
}

fmi2Status fmi2GetIntegerStatus(fmi2Component c, const fmi2StatusKind s, fmi2Integer *value)
{
    (void)value;
    CHECK_COMPONENT(c);
    inst_log(INST(c), MODEL_DISCARD, "fmi2GetIntegerStatus: status kind %d is not provided.", (int)s);
    return fmi2Discard;
}

fmi2Status fmi2GetBooleanStatus(fmi2Component c, const fmi2StatusKind s, fmi2Boolean *value)
{
    CHECK_COMPONENT(c);
    if (value == NULL) return fmi2Error;
    if (s == fmi2Terminated) {
        *value = INST(c)->terminated ? fmi2True : fmi2False;
        return fmi2OK;
    }
    inst_log(INST(c), MODEL_DISCARD, "fmi2GetBooleanStatus: status kind %d is not provided.", (int)s);
    return fmi2Discard;
}

fmi2Status fmi2GetStringStatus(fmi2Component c, const fmi2StatusKind s, fmi2String *value)
{
    CHECK_COMPONENT(c);
    if (value == NULL) return fmi2Error;
    if (s == fmi2PendingStatus) {
        *value = "No asynchronous step is pending.";
        return fmi2OK;
    }
    inst_log(INST(c), MODEL_DISCARD, "fmi2GetStringStatus: status kind %d is not provided.", (int)s);
    return fmi2Discard;
}
