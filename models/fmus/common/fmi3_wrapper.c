/*
 * fmi3_wrapper.c -- FMI 3.0 Co-Simulation interface over the model interface (model.h).
 *
 * Every function of the FMI 3.0 API is exported. Variables are scalars of type Float64,
 * Int32 and Boolean. Model Exchange, Scheduled Execution, clocks, configuration mode
 * and derivatives return fmi3Error after logging why (instantiation functions return
 * NULL). Event Mode is accepted as a no-op (the models have no events), so importers
 * that set eventModeUsed=true still work.
 */
#include <stdlib.h>
#include <string.h>

#include "fmi3Functions.h"
#include "instance.h"

typedef struct {
    Instance *inst;             /* must stay the first member */
    fmi3InstanceEnvironment env;
    fmi3LogMessageCallback log;
} Fmi3Instance;

static fmi3Status to_fmi3(ModelStatus st)
{
    switch (st) {
    case MODEL_OK: return fmi3OK;
    case MODEL_WARNING: return fmi3Warning;
    case MODEL_DISCARD: return fmi3Discard;
    default: return fmi3Error;
    }
}

static void emit3(Instance *inst, ModelStatus status, const char *category, const char *message)
{
    Fmi3Instance *w = (Fmi3Instance *)inst->emit_ctx;
    if (w == NULL || w->log == NULL) return;
    w->log(w->env, to_fmi3(status), category, message);
}

#define INST(c) (((Fmi3Instance *)(c))->inst)

#define CHECK_INSTANCE(c)                  \
    do {                                   \
        if ((c) == NULL) return fmi3Error; \
    } while (0)

#define UNSUPPORTED(c, fname)                                  \
    do {                                                       \
        CHECK_INSTANCE(c);                                     \
        return to_fmi3(inst_unsupported(INST(c), fname));     \
    } while (0)

static int check_sizes(Instance *inst, const fmi3ValueReference vrs[], size_t nvr, const void *values,
                       size_t nValues, const char *fname)
{
    if (nvr > 0 && (vrs == NULL || values == NULL)) {
        inst_log(inst, MODEL_ERROR, "%s: NULL array argument.", fname);
        return 0;
    }
    if (nValues != nvr) {
        inst_log(inst, MODEL_ERROR, "%s: nValues (%lu) != nValueReferences (%lu); all variables are scalars.",
                 fname, (unsigned long)nValues, (unsigned long)nvr);
        return 0;
    }
    return 1;
}

/* Accessors for types the models never use: a clear error naming the variable. */
static fmi3Status no_such_type(fmi3Instance c, const fmi3ValueReference vrs[], size_t nvr, const char *type,
                               const char *fname)
{
    CHECK_INSTANCE(c);
    if (nvr == 0) return fmi3OK;
    if (vrs != NULL && (size_t)vrs[0] < MODEL_N_VARIABLES)
        inst_log(INST(c), MODEL_ERROR, "%s: variable '%s' (vr %u) is not of type %s.", fname,
                 MODEL_VARIABLES[vrs[0]].name, (unsigned)vrs[0], type);
    else
        inst_log(INST(c), MODEL_ERROR, "%s: %s has no variables of type %s.", fname, MODEL_IDENTIFIER_STRING,
                 type);
    return fmi3Error;
}

/* ------------------------------------------------------------------ common functions */

const char *fmi3GetVersion(void) { return fmi3Version; }

fmi3Status fmi3SetDebugLogging(fmi3Instance instance, fmi3Boolean loggingOn, size_t nCategories,
                               const fmi3String categories[])
{
    size_t i;
    CHECK_INSTANCE(instance);
    for (i = 0; i < nCategories; i++) {
        const char *cat = categories ? categories[i] : NULL;
        if (cat == NULL || (strcmp(cat, "logAll") != 0 && strcmp(cat, "logStatusWarning") != 0 &&
                            strcmp(cat, "logStatusDiscard") != 0 && strcmp(cat, "logStatusError") != 0)) {
            inst_log(INST(instance), MODEL_ERROR, "fmi3SetDebugLogging: unknown log category '%s'.",
                     cat ? cat : "(null)");
            return fmi3Error;
        }
    }
    INST(instance)->logging_on = loggingOn ? 1 : 0;
    return fmi3OK;
}

fmi3Instance fmi3InstantiateModelExchange(fmi3String instanceName, fmi3String instantiationToken,
                                          fmi3String resourcePath, fmi3Boolean visible, fmi3Boolean loggingOn,
                                          fmi3InstanceEnvironment instanceEnvironment,
                                          fmi3LogMessageCallback logMessage)
{
    (void)instanceName;
    (void)instantiationToken;
    (void)resourcePath;
    (void)visible;
    (void)loggingOn;
    if (logMessage)
        logMessage(instanceEnvironment, fmi3Error, "logStatusError",
                   "fmi3InstantiateModelExchange: this FMU supports Co-Simulation only.");
    return NULL;
}

fmi3Instance fmi3InstantiateCoSimulation(fmi3String instanceName, fmi3String instantiationToken,
                                         fmi3String resourcePath, fmi3Boolean visible, fmi3Boolean loggingOn,
                                         fmi3Boolean eventModeUsed, fmi3Boolean earlyReturnAllowed,
                                         const fmi3ValueReference requiredIntermediateVariables[],
                                         size_t nRequiredIntermediateVariables,
                                         fmi3InstanceEnvironment instanceEnvironment,
                                         fmi3LogMessageCallback logMessage,
                                         fmi3IntermediateUpdateCallback intermediateUpdate)
{
    Fmi3Instance *w;
    const char *name = instanceName ? instanceName : "";
    (void)resourcePath;
    (void)visible;
    (void)eventModeUsed;
    (void)earlyReturnAllowed;
    (void)requiredIntermediateVariables;
    (void)intermediateUpdate;
    w = (Fmi3Instance *)calloc(1, sizeof(Fmi3Instance));
    if (w == NULL) return NULL;
    w->env = instanceEnvironment;
    w->log = logMessage;
    w->inst = instance_new(name, emit3, w, loggingOn ? 1 : 0);
    if (w->inst == NULL) {
        if (logMessage)
            logMessage(instanceEnvironment, fmi3Error, "logStatusError", "fmi3InstantiateCoSimulation: out of memory.");
        free(w);
        return NULL;
    }
    if (instantiationToken == NULL || strcmp(instantiationToken, MODEL_TOKEN_STRING) != 0) {
        inst_log(w->inst, MODEL_ERROR,
                 "fmi3InstantiateCoSimulation: instantiationToken '%s' does not match this binary ('%s').",
                 instantiationToken ? instantiationToken : "(null)", MODEL_TOKEN_STRING);
        instance_free(w->inst);
        free(w);
        return NULL;
    }
    if (nRequiredIntermediateVariables > 0) {
        inst_log(w->inst, MODEL_ERROR,
                 "fmi3InstantiateCoSimulation: intermediate variable access is not supported.");
        instance_free(w->inst);
        free(w);
        return NULL;
    }
    return (fmi3Instance)w;
}

fmi3Instance fmi3InstantiateScheduledExecution(fmi3String instanceName, fmi3String instantiationToken,
                                               fmi3String resourcePath, fmi3Boolean visible,
                                               fmi3Boolean loggingOn, fmi3InstanceEnvironment instanceEnvironment,
                                               fmi3LogMessageCallback logMessage,
                                               fmi3ClockUpdateCallback clockUpdate,
                                               fmi3LockPreemptionCallback lockPreemption,
                                               fmi3UnlockPreemptionCallback unlockPreemption)
{
    (void)instanceName;
    (void)instantiationToken;
    (void)resourcePath;
    (void)visible;
    (void)loggingOn;
    (void)clockUpdate;
    (void)lockPreemption;
    (void)unlockPreemption;
    if (logMessage)
        logMessage(instanceEnvironment, fmi3Error, "logStatusError",
                   "fmi3InstantiateScheduledExecution: this FMU supports Co-Simulation only.");
    return NULL;
}

void fmi3FreeInstance(fmi3Instance instance)
{
    Fmi3Instance *w = (Fmi3Instance *)instance;
    if (w == NULL) return;
    instance_free(w->inst);
    free(w);
}

fmi3Status fmi3EnterInitializationMode(fmi3Instance instance, fmi3Boolean toleranceDefined,
                                       fmi3Float64 tolerance, fmi3Float64 startTime,
                                       fmi3Boolean stopTimeDefined, fmi3Float64 stopTime)
{
    (void)toleranceDefined;
    (void)tolerance;
    (void)stopTimeDefined;
    (void)stopTime;
    CHECK_INSTANCE(instance);
    return to_fmi3(inst_enter_init(INST(instance), startTime));
}

fmi3Status fmi3ExitInitializationMode(fmi3Instance instance)
{
    CHECK_INSTANCE(instance);
    return to_fmi3(inst_exit_init(INST(instance)));
}

fmi3Status fmi3EnterEventMode(fmi3Instance instance)
{
    CHECK_INSTANCE(instance);
    /* No events in these models: Event Mode is the Step Mode state without stepping. */
    return inst_check_phase(INST(instance), PHASE_STEP, "fmi3EnterEventMode") ? fmi3OK : fmi3Error;
}

fmi3Status fmi3Terminate(fmi3Instance instance)
{
    CHECK_INSTANCE(instance);
    return to_fmi3(inst_terminate(INST(instance)));
}

fmi3Status fmi3Reset(fmi3Instance instance)
{
    CHECK_INSTANCE(instance);
    instance_reset(INST(instance));
    return fmi3OK;
}

/* ------------------------------------------------------------------ get / set */

fmi3Status fmi3GetFloat64(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                          size_t nValueReferences, fmi3Float64 values[], size_t nValues)
{
    size_t i;
    ModelStatus worst = MODEL_OK, st;
    CHECK_INSTANCE(instance);
    if (!check_sizes(INST(instance), valueReferences, nValueReferences, values, nValues, "fmi3GetFloat64"))
        return fmi3Error;
    for (i = 0; i < nValueReferences; i++) {
        st = inst_get_real(INST(instance), valueReferences[i], &values[i], "fmi3GetFloat64");
        if (st > MODEL_WARNING) return to_fmi3(st);
        if (st > worst) worst = st;
    }
    return to_fmi3(worst);
}

fmi3Status fmi3GetInt32(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                        size_t nValueReferences, fmi3Int32 values[], size_t nValues)
{
    size_t i;
    ModelStatus worst = MODEL_OK, st;
    CHECK_INSTANCE(instance);
    if (!check_sizes(INST(instance), valueReferences, nValueReferences, values, nValues, "fmi3GetInt32"))
        return fmi3Error;
    for (i = 0; i < nValueReferences; i++) {
        st = inst_get_int(INST(instance), valueReferences[i], &values[i], "fmi3GetInt32");
        if (st > MODEL_WARNING) return to_fmi3(st);
        if (st > worst) worst = st;
    }
    return to_fmi3(worst);
}

fmi3Status fmi3GetBoolean(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                          size_t nValueReferences, fmi3Boolean values[], size_t nValues)
{
    size_t i;
    int v;
    ModelStatus worst = MODEL_OK, st;
    CHECK_INSTANCE(instance);
    if (!check_sizes(INST(instance), valueReferences, nValueReferences, values, nValues, "fmi3GetBoolean"))
        return fmi3Error;
    for (i = 0; i < nValueReferences; i++) {
        st = inst_get_bool(INST(instance), valueReferences[i], &v, "fmi3GetBoolean");
        if (st > MODEL_WARNING) return to_fmi3(st);
        values[i] = v ? fmi3True : fmi3False;
        if (st > worst) worst = st;
    }
    return to_fmi3(worst);
}

fmi3Status fmi3SetFloat64(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                          size_t nValueReferences, const fmi3Float64 values[], size_t nValues)
{
    size_t i;
    CHECK_INSTANCE(instance);
    if (!check_sizes(INST(instance), valueReferences, nValueReferences, values, nValues, "fmi3SetFloat64"))
        return fmi3Error;
    for (i = 0; i < nValueReferences; i++)
        if (inst_set_real(INST(instance), valueReferences[i], values[i], "fmi3SetFloat64") != MODEL_OK)
            return fmi3Error;
    return fmi3OK;
}

fmi3Status fmi3SetInt32(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                        size_t nValueReferences, const fmi3Int32 values[], size_t nValues)
{
    size_t i;
    CHECK_INSTANCE(instance);
    if (!check_sizes(INST(instance), valueReferences, nValueReferences, values, nValues, "fmi3SetInt32"))
        return fmi3Error;
    for (i = 0; i < nValueReferences; i++)
        if (inst_set_int(INST(instance), valueReferences[i], values[i], "fmi3SetInt32") != MODEL_OK)
            return fmi3Error;
    return fmi3OK;
}

fmi3Status fmi3SetBoolean(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                          size_t nValueReferences, const fmi3Boolean values[], size_t nValues)
{
    size_t i;
    CHECK_INSTANCE(instance);
    if (!check_sizes(INST(instance), valueReferences, nValueReferences, values, nValues, "fmi3SetBoolean"))
        return fmi3Error;
    for (i = 0; i < nValueReferences; i++)
        if (inst_set_bool(INST(instance), valueReferences[i], values[i] ? 1 : 0, "fmi3SetBoolean") != MODEL_OK)
            return fmi3Error;
    return fmi3OK;
}

#define NO_GETTER(fn, ctype, tname)                                                                   \
    fmi3Status fn(fmi3Instance instance, const fmi3ValueReference valueReferences[],                  \
                  size_t nValueReferences, ctype values[], size_t nValues)                            \
    {                                                                                                 \
        (void)values;                                                                                 \
        (void)nValues;                                                                                \
        return no_such_type(instance, valueReferences, nValueReferences, tname, #fn);                 \
    }
#define NO_SETTER(fn, ctype, tname)                                                                   \
    fmi3Status fn(fmi3Instance instance, const fmi3ValueReference valueReferences[],                  \
                  size_t nValueReferences, const ctype values[], size_t nValues)                      \
    {                                                                                                 \
        (void)values;                                                                                 \
        (void)nValues;                                                                                \
        return no_such_type(instance, valueReferences, nValueReferences, tname, #fn);                 \
    }

NO_GETTER(fmi3GetFloat32, fmi3Float32, "Float32")
NO_GETTER(fmi3GetInt8, fmi3Int8, "Int8")
NO_GETTER(fmi3GetUInt8, fmi3UInt8, "UInt8")
NO_GETTER(fmi3GetInt16, fmi3Int16, "Int16")
NO_GETTER(fmi3GetUInt16, fmi3UInt16, "UInt16")
NO_GETTER(fmi3GetUInt32, fmi3UInt32, "UInt32")
NO_GETTER(fmi3GetInt64, fmi3Int64, "Int64")
NO_GETTER(fmi3GetUInt64, fmi3UInt64, "UInt64")
NO_GETTER(fmi3GetString, fmi3String, "String")
NO_SETTER(fmi3SetFloat32, fmi3Float32, "Float32")
NO_SETTER(fmi3SetInt8, fmi3Int8, "Int8")
NO_SETTER(fmi3SetUInt8, fmi3UInt8, "UInt8")
NO_SETTER(fmi3SetInt16, fmi3Int16, "Int16")
NO_SETTER(fmi3SetUInt16, fmi3UInt16, "UInt16")
NO_SETTER(fmi3SetUInt32, fmi3UInt32, "UInt32")
NO_SETTER(fmi3SetInt64, fmi3Int64, "Int64")
NO_SETTER(fmi3SetUInt64, fmi3UInt64, "UInt64")
NO_SETTER(fmi3SetString, fmi3String, "String")

fmi3Status fmi3GetBinary(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                         size_t nValueReferences, size_t valueSizes[], fmi3Binary values[], size_t nValues)
{
    (void)valueSizes;
    (void)values;
    (void)nValues;
    return no_such_type(instance, valueReferences, nValueReferences, "Binary", "fmi3GetBinary");
}

fmi3Status fmi3SetBinary(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                         size_t nValueReferences, const size_t valueSizes[], const fmi3Binary values[],
                         size_t nValues)
{
    (void)valueSizes;
    (void)values;
    (void)nValues;
    return no_such_type(instance, valueReferences, nValueReferences, "Binary", "fmi3SetBinary");
}

fmi3Status fmi3GetClock(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                        size_t nValueReferences, fmi3Clock values[])
{
    (void)values;
    return no_such_type(instance, valueReferences, nValueReferences, "Clock", "fmi3GetClock");
}

fmi3Status fmi3SetClock(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                        size_t nValueReferences, const fmi3Clock values[])
{
    (void)values;
    return no_such_type(instance, valueReferences, nValueReferences, "Clock", "fmi3SetClock");
}

/* ------------------------------------------------------------------ dependencies */

fmi3Status fmi3GetNumberOfVariableDependencies(fmi3Instance instance, fmi3ValueReference valueReference,
                                               size_t *nDependencies)
{
    (void)valueReference;
    (void)nDependencies;
    UNSUPPORTED(instance, "fmi3GetNumberOfVariableDependencies");
}

fmi3Status fmi3GetVariableDependencies(fmi3Instance instance, fmi3ValueReference dependent,
                                       size_t elementIndicesOfDependent[], fmi3ValueReference independents[],
                                       size_t elementIndicesOfIndependents[],
                                       fmi3DependencyKind dependencyKinds[], size_t nDependencies)
{
    (void)dependent;
    (void)elementIndicesOfDependent;
    (void)independents;
    (void)elementIndicesOfIndependents;
    (void)dependencyKinds;
    (void)nDependencies;
    UNSUPPORTED(instance, "fmi3GetVariableDependencies");
}

/* ------------------------------------------------------------------ FMU state */

fmi3Status fmi3GetFMUState(fmi3Instance instance, fmi3FMUState *FMUState)
{
    CHECK_INSTANCE(instance);
    return to_fmi3(inst_get_state(INST(instance), (Snapshot **)FMUState, "fmi3GetFMUState"));
}

fmi3Status fmi3SetFMUState(fmi3Instance instance, fmi3FMUState FMUState)
{
    CHECK_INSTANCE(instance);
    return to_fmi3(inst_set_state(INST(instance), (const Snapshot *)FMUState, "fmi3SetFMUState"));
}

fmi3Status fmi3FreeFMUState(fmi3Instance instance, fmi3FMUState *FMUState)
{
    CHECK_INSTANCE(instance);
    return to_fmi3(inst_free_state(INST(instance), (Snapshot **)FMUState, "fmi3FreeFMUState"));
}

fmi3Status fmi3SerializedFMUStateSize(fmi3Instance instance, fmi3FMUState FMUState, size_t *size)
{
    (void)FMUState;
    CHECK_INSTANCE(instance);
    if (size == NULL) return fmi3Error;
    *size = inst_serialized_size();
    return fmi3OK;
}

fmi3Status fmi3SerializeFMUState(fmi3Instance instance, fmi3FMUState FMUState, fmi3Byte serializedState[],
                                 size_t size)
{
    CHECK_INSTANCE(instance);
    return to_fmi3(inst_serialize(INST(instance), (const Snapshot *)FMUState, serializedState, size,
                                  "fmi3SerializeFMUState"));
}

fmi3Status fmi3DeserializeFMUState(fmi3Instance instance, const fmi3Byte serializedState[], size_t size,
                                   fmi3FMUState *FMUState)
{
    CHECK_INSTANCE(instance);
    return to_fmi3(inst_deserialize(INST(instance), serializedState, size, (Snapshot **)FMUState,
                                    "fmi3DeserializeFMUState"));
}

/* ------------------------------------------------------------------ derivatives */

fmi3Status fmi3GetDirectionalDerivative(fmi3Instance instance, const fmi3ValueReference unknowns[],
                                        size_t nUnknowns, const fmi3ValueReference knowns[], size_t nKnowns,
                                        const fmi3Float64 seed[], size_t nSeed, fmi3Float64 sensitivity[],
                                        size_t nSensitivity)
{
    (void)unknowns;
    (void)nUnknowns;
    (void)knowns;
    (void)nKnowns;
    (void)seed;
    (void)nSeed;
    (void)sensitivity;
    (void)nSensitivity;
    UNSUPPORTED(instance, "fmi3GetDirectionalDerivative");
}

fmi3Status fmi3GetAdjointDerivative(fmi3Instance instance, const fmi3ValueReference unknowns[],
                                    size_t nUnknowns, const fmi3ValueReference knowns[], size_t nKnowns,
                                    const fmi3Float64 seed[], size_t nSeed, fmi3Float64 sensitivity[],
                                    size_t nSensitivity)
{
    (void)unknowns;
    (void)nUnknowns;
    (void)knowns;
    (void)nKnowns;
    (void)seed;
    (void)nSeed;
    (void)sensitivity;
    (void)nSensitivity;
    UNSUPPORTED(instance, "fmi3GetAdjointDerivative");
}

/* ------------------------------------------------------------------ configuration, clocks */

fmi3Status fmi3EnterConfigurationMode(fmi3Instance instance) { UNSUPPORTED(instance, "fmi3EnterConfigurationMode"); }

fmi3Status fmi3ExitConfigurationMode(fmi3Instance instance) { UNSUPPORTED(instance, "fmi3ExitConfigurationMode"); }

fmi3Status fmi3GetIntervalDecimal(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                                  size_t nValueReferences, fmi3Float64 intervals[],
                                  fmi3IntervalQualifier qualifiers[])
{
    (void)valueReferences;
    (void)nValueReferences;
    (void)intervals;
    (void)qualifiers;
    UNSUPPORTED(instance, "fmi3GetIntervalDecimal");
}

fmi3Status fmi3GetIntervalFraction(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                                   size_t nValueReferences, fmi3UInt64 counters[], fmi3UInt64 resolutions[],
                                   fmi3IntervalQualifier qualifiers[])
{
    (void)valueReferences;
    (void)nValueReferences;
    (void)counters;
    (void)resolutions;
    (void)qualifiers;
    UNSUPPORTED(instance, "fmi3GetIntervalFraction");
}

fmi3Status fmi3GetShiftDecimal(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                               size_t nValueReferences, fmi3Float64 shifts[])
{
    (void)valueReferences;
    (void)nValueReferences;
    (void)shifts;
    UNSUPPORTED(instance, "fmi3GetShiftDecimal");
}

fmi3Status fmi3GetShiftFraction(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                                size_t nValueReferences, fmi3UInt64 counters[], fmi3UInt64 resolutions[])
{
    (void)valueReferences;
    (void)nValueReferences;
    (void)counters;
    (void)resolutions;
    UNSUPPORTED(instance, "fmi3GetShiftFraction");
}

fmi3Status fmi3SetIntervalDecimal(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                                  size_t nValueReferences, const fmi3Float64 intervals[])
{
    (void)valueReferences;
    (void)nValueReferences;
    (void)intervals;
    UNSUPPORTED(instance, "fmi3SetIntervalDecimal");
}

fmi3Status fmi3SetIntervalFraction(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                                   size_t nValueReferences, const fmi3UInt64 counters[],
                                   const fmi3UInt64 resolutions[])
{
    (void)valueReferences;
    (void)nValueReferences;
    (void)counters;
    (void)resolutions;
    UNSUPPORTED(instance, "fmi3SetIntervalFraction");
}

fmi3Status fmi3SetShiftDecimal(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                               size_t nValueReferences, const fmi3Float64 shifts[])
{
    (void)valueReferences;
    (void)nValueReferences;
    (void)shifts;
    UNSUPPORTED(instance, "fmi3SetShiftDecimal");
}

fmi3Status fmi3SetShiftFraction(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                                size_t nValueReferences, const fmi3UInt64 counters[],
                                const fmi3UInt64 resolutions[])
{
    (void)valueReferences;
    (void)nValueReferences;
    (void)counters;
    (void)resolutions;
    UNSUPPORTED(instance, "fmi3SetShiftFraction");
}

fmi3Status fmi3EvaluateDiscreteStates(fmi3Instance instance) { UNSUPPORTED(instance, "fmi3EvaluateDiscreteStates"); }

fmi3Status fmi3UpdateDiscreteStates(fmi3Instance instance, fmi3Boolean *discreteStatesNeedUpdate,
                                    fmi3Boolean *terminateSimulation,
                                    fmi3Boolean *nominalsOfContinuousStatesChanged,
                                    fmi3Boolean *valuesOfContinuousStatesChanged, fmi3Boolean *nextEventTimeDefined,
                                    fmi3Float64 *nextEventTime)
{
    Instance *inst;
    CHECK_INSTANCE(instance);
    inst = INST(instance);
    if (!inst_check_phase(inst, PHASE_INIT | PHASE_STEP, "fmi3UpdateDiscreteStates")) return fmi3Error;
    /* No discrete states: nothing ever needs updating. */
    if (discreteStatesNeedUpdate) *discreteStatesNeedUpdate = fmi3False;
    if (terminateSimulation) *terminateSimulation = inst->terminated ? fmi3True : fmi3False;
    if (nominalsOfContinuousStatesChanged) *nominalsOfContinuousStatesChanged = fmi3False;
    if (valuesOfContinuousStatesChanged) *valuesOfContinuousStatesChanged = fmi3False;
    if (nextEventTimeDefined) *nextEventTimeDefined = fmi3False;
    if (nextEventTime) *nextEventTime = 0.0;
    return fmi3OK;
}

/* ------------------------------------------------------------------ Model Exchange (unsupported) */

fmi3Status fmi3EnterContinuousTimeMode(fmi3Instance instance) { UNSUPPORTED(instance, "fmi3EnterContinuousTimeMode"); }

fmi3Status fmi3CompletedIntegratorStep(fmi3Instance instance, fmi3Boolean noSetFMUStatePriorToCurrentPoint,
                                       fmi3Boolean *enterEventMode, fmi3Boolean *terminateSimulation)
{
    (void)noSetFMUStatePriorToCurrentPoint;
    (void)enterEventMode;
    (void)terminateSimulation;
    UNSUPPORTED(instance, "fmi3CompletedIntegratorStep");
}

fmi3Status fmi3SetTime(fmi3Instance instance, fmi3Float64 time)
{
    (void)time;
    UNSUPPORTED(instance, "fmi3SetTime");
}

fmi3Status fmi3SetContinuousStates(fmi3Instance instance, const fmi3Float64 continuousStates[],
                                   size_t nContinuousStates)
{
    (void)continuousStates;
    (void)nContinuousStates;
    UNSUPPORTED(instance, "fmi3SetContinuousStates");
}

fmi3Status fmi3GetContinuousStateDerivatives(fmi3Instance instance, fmi3Float64 derivatives[],
                                             size_t nContinuousStates)
{
    (void)derivatives;
    (void)nContinuousStates;
    UNSUPPORTED(instance, "fmi3GetContinuousStateDerivatives");
}

fmi3Status fmi3GetEventIndicators(fmi3Instance instance, fmi3Float64 eventIndicators[], size_t nEventIndicators)
{
    (void)eventIndicators;
    (void)nEventIndicators;
    UNSUPPORTED(instance, "fmi3GetEventIndicators");
}

fmi3Status fmi3GetContinuousStates(fmi3Instance instance, fmi3Float64 continuousStates[],
                                   size_t nContinuousStates)
{
    (void)continuousStates;
    (void)nContinuousStates;
    UNSUPPORTED(instance, "fmi3GetContinuousStates");
}

fmi3Status fmi3GetNominalsOfContinuousStates(fmi3Instance instance, fmi3Float64 nominals[],
                                             size_t nContinuousStates)
{
    (void)nominals;
    (void)nContinuousStates;
    UNSUPPORTED(instance, "fmi3GetNominalsOfContinuousStates");
}

fmi3Status fmi3GetNumberOfEventIndicators(fmi3Instance instance, size_t *nEventIndicators)
{
    (void)nEventIndicators;
    UNSUPPORTED(instance, "fmi3GetNumberOfEventIndicators");
}

fmi3Status fmi3GetNumberOfContinuousStates(fmi3Instance instance, size_t *nContinuousStates)
{
    (void)nContinuousStates;
    UNSUPPORTED(instance, "fmi3GetNumberOfContinuousStates");
}

/* ------------------------------------------------------------------ Co-Simulation */

fmi3Status fmi3EnterStepMode(fmi3Instance instance)
{
    CHECK_INSTANCE(instance);
    return inst_check_phase(INST(instance), PHASE_STEP, "fmi3EnterStepMode") ? fmi3OK : fmi3Error;
}

fmi3Status fmi3GetOutputDerivatives(fmi3Instance instance, const fmi3ValueReference valueReferences[],
                                    size_t nValueReferences, const fmi3Int32 orders[], fmi3Float64 values[],
                                    size_t nValues)
{
    (void)valueReferences;
    (void)nValueReferences;
    (void)orders;
    (void)values;
    (void)nValues;
    UNSUPPORTED(instance, "fmi3GetOutputDerivatives");
}

fmi3Status fmi3DoStep(fmi3Instance instance, fmi3Float64 currentCommunicationPoint,
                      fmi3Float64 communicationStepSize, fmi3Boolean noSetFMUStatePriorToCurrentPoint,
                      fmi3Boolean *eventHandlingNeeded, fmi3Boolean *terminateSimulation, fmi3Boolean *earlyReturn,
                      fmi3Float64 *lastSuccessfulTime)
{
    Instance *inst;
    ModelStatus st;
    (void)noSetFMUStatePriorToCurrentPoint;
    CHECK_INSTANCE(instance);
    inst = INST(instance);
    st = inst_do_step(inst, currentCommunicationPoint, communicationStepSize, "fmi3DoStep");
    if (eventHandlingNeeded) *eventHandlingNeeded = fmi3False;
    if (terminateSimulation) *terminateSimulation = inst->terminated ? fmi3True : fmi3False;
    if (earlyReturn) *earlyReturn = fmi3False;
    if (lastSuccessfulTime) *lastSuccessfulTime = inst->last_successful_time;
    return to_fmi3(st);
}

/* ------------------------------------------------------------------ Scheduled Execution */

fmi3Status fmi3ActivateModelPartition(fmi3Instance instance, fmi3ValueReference clockReference,
                                      fmi3Float64 activationTime)
{
    (void)clockReference;
    (void)activationTime;
    UNSUPPORTED(instance, "fmi3ActivateModelPartition");
}
