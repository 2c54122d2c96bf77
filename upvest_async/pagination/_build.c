/* Typed positions from a decoded page, in one C pass: the compiled twin of
 * upvest_async/pagination/positions.py (_canonical_wire_positions and _from_columns).
 *
 * build(data, config) takes the WirePosition structs msgspec decoded from a positions page
 * (S12, E16) and returns a list of Position objects, or None when any value is not in the
 * canonical form (a lower-case 8-4-4-4-12 uuid; a decimal of the seed's pattern
 * -?[0-9]{1,63}(\.[0-9]{1,27})? without the ".5" form), in which case the caller takes the
 * general path, which decides and raises its typed error. Nothing else is decided here.
 *
 * The objects are made exactly as the Python builder makes them: instances through their
 * type's tp_new (object.__new__) and their slots through the slots' own member descriptors
 * (the Python module checked at import that these classes hold nothing else, and that a uuid
 * made this way is indistinguishable from uuid.UUID(text)). Decimals are Decimal(text).
 * Values found in the memos (dicts of str -> value, shared with the converter, whose keys
 * only ever come from valid input) are reused, as in Python.
 *
 * Limited API (abi3) of Python 3.11, so one wheel serves every supported Python.
 */
#define Py_LIMITED_API 0x030B0000
#define PY_SSIZE_T_CLEAN
#include <Python.h>

enum { ACCOUNT, INSTRUMENT, QUANTITY, AVAILABLE, LOCKED, PENDING, N_FIELDS };

typedef struct {
    descrgetfunc get;                                    /* of member descriptors */
    descrsetfunc set;
    PyObject *wire_position, *wire_instrument;           /* types */
    PyObject *position, *instrument, *uuid, *decimal;    /* types */
    PyObject *safe_unknown;                              /* uuid.SafeUUID.unknown */
    PyObject *uuids, *instruments, *decimals;            /* memo dicts */
    Py_ssize_t memo_limit, decimal_limit;
    PyObject *wire_get[N_FIELDS], *wire_instrument_get[2];
    PyObject *position_set[N_FIELDS], *instrument_slot[2], *uuid_set[2];
    newfunc position_new, instrument_new, uuid_new;
    PyObject *empty;                                     /* () for tp_new */
} Config;

/* --- canonical forms (ASCII bytes) ---------------------------------------------------------- */

static int
is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static int
canonical_uuid(const char *s, Py_ssize_t n)
{
    if (n != 36) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') {
                return 0;
            }
        }
        else if (!is_hex(s[i])) {
            return 0;
        }
    }
    return 1;
}

static Py_ssize_t
digits(const char *s, Py_ssize_t n, Py_ssize_t i)
{
    Py_ssize_t start = i;
    while (i < n && s[i] >= '0' && s[i] <= '9') {
        i++;
    }
    return i - start;
}

static int
canonical_decimal(const char *s, Py_ssize_t n)
{
    Py_ssize_t i = (n > 0 && s[0] == '-') ? 1 : 0;
    Py_ssize_t whole = digits(s, n, i);
    if (whole < 1 || whole > 63) {
        return 0;
    }
    i += whole;
    if (i == n) {
        return 1;
    }
    if (s[i] != '.') {
        return 0;
    }
    i++;
    Py_ssize_t fraction = digits(s, n, i);
    return fraction >= 1 && fraction <= 27 && i + fraction == n;
}

/* The ASCII bytes of an exact str, or NULL (no error set) when it has other characters or no
 * UTF-8 form (a lone surrogate). */
static const char *
ascii(PyObject *text, Py_ssize_t *size)
{
    const char *bytes = PyUnicode_AsUTF8AndSize(text, size);
    if (bytes == NULL) {
        PyErr_Clear();
        return NULL;
    }
    if (*size != PyUnicode_GetLength(text)) {
        return NULL;
    }
    return bytes;
}

/* --- values ---------------------------------------------------------------------------------- */

/* A new instance of a type with its slots set through their member descriptors (which check
 * the instance's type); steals nothing. */
static PyObject *
make(Config *c, newfunc new, PyObject *type, PyObject **slots, PyObject **values, int n)
{
    PyObject *object = new((PyTypeObject *)type, c->empty, NULL);
    if (object == NULL) {
        return NULL;
    }
    for (int k = 0; k < n; k++) {
        if (c->set(slots[k], object, values[k]) < 0) {
            Py_DECREF(object);
            return NULL;
        }
    }
    return object;
}

static PyObject *
get(Config *c, PyObject *descriptor, PyObject *object)
{
    return c->get(descriptor, object, (PyObject *)Py_TYPE(object));
}

/* A new reference to the uuid of a canonical uuid string (not checked here). */
static PyObject *
new_uuid(Config *c, const char *s)
{
    char hex[33];
    int j = 0;
    for (int i = 0; i < 36; i++) {
        if (s[i] != '-') {
            hex[j++] = s[i];
        }
    }
    hex[32] = '\0';
    PyObject *values[2] = {PyLong_FromString(hex, NULL, 16), c->safe_unknown};
    if (values[0] == NULL) {
        return NULL;
    }
    PyObject *made = make(c, c->uuid_new, c->uuid, c->uuid_set, values, 2);
    Py_DECREF(values[0]);
    return made;
}

/* Put key -> value into a memo, emptied first when it holds ``limit`` entries. */
static int
remember(PyObject *memo, PyObject *key, PyObject *value, Py_ssize_t limit)
{
    if (PyDict_Size(memo) >= limit) {
        PyDict_Clear(memo);
    }
    return PyDict_SetItem(memo, key, value);
}

/* A new reference to memo[text]; else NULL, with an error set, or with *skip set for a value
 * that is not canonical, or with neither and *bytes the ASCII bytes of a canonical value not
 * met before. */
static PyObject *
recall(PyObject *memo, PyObject *text, int (*canonical)(const char *, Py_ssize_t),
       const char **bytes, int *skip)
{
    PyObject *found = PyDict_GetItemWithError(memo, text);
    if (found != NULL) {
        Py_INCREF(found);
        return found;
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t n;
    *bytes = ascii(text, &n);
    if (*bytes == NULL || !canonical(*bytes, n)) {
        *skip = 1;
    }
    return NULL;
}

/* The values below return a new reference, NULL with an error set, or NULL with no error for
 * a value that is not canonical (*skip set). */

static PyObject *
uuid_of(Config *c, PyObject *text, int memoise, int *skip)
{
    const char *s = NULL;
    PyObject *made = recall(c->uuids, text, canonical_uuid, &s, skip);
    if (made != NULL || *skip || PyErr_Occurred()) {
        return made;
    }
    made = new_uuid(c, s);
    if (made != NULL && memoise && remember(c->uuids, text, made, c->memo_limit) < 0) {
        Py_CLEAR(made);
    }
    return made;
}

static PyObject *
decimal_of(Config *c, PyObject *text, int *skip)
{
    const char *s = NULL;
    PyObject *made = recall(c->decimals, text, canonical_decimal, &s, skip);
    if (made != NULL || *skip || PyErr_Occurred()) {
        return made;
    }
    made = PyObject_CallFunctionObjArgs(c->decimal, text, NULL);
    if (made != NULL && PyDict_Size(c->decimals) < c->decimal_limit
            && PyDict_SetItem(c->decimals, text, made) < 0) {
        Py_CLEAR(made);
    }
    return made;
}

static int
same_isin(PyObject *a, PyObject *b)
{
    if (a == Py_None || b == Py_None) {
        return a == b;
    }
    return PyUnicode_CheckExact(a) && PyUnicode_CheckExact(b) && PyUnicode_Compare(a, b) == 0;
}

static PyObject *
instrument_of(Config *c, PyObject *id, PyObject *isin, int *skip)
{
    PyObject *found = PyDict_GetItemWithError(c->instruments, id);
    if (found != NULL) {
        if (Py_TYPE(found) == (PyTypeObject *)c->instrument) {
            PyObject *known = get(c, c->instrument_slot[1], found);
            if (known == NULL) {
                return NULL;
            }
            int same = same_isin(known, isin);
            Py_DECREF(known);
            if (same) {
                Py_INCREF(found);
                return found;
            }
        }
    }
    else if (PyErr_Occurred()) {
        return NULL;
    }
    PyObject *values[2] = {uuid_of(c, id, 0, skip), isin};
    if (values[0] == NULL) {
        return NULL;
    }
    PyObject *made = make(c, c->instrument_new, c->instrument, c->instrument_slot, values, 2);
    Py_DECREF(values[0]);
    if (made != NULL && remember(c->instruments, id, made, c->memo_limit) < 0) {
        Py_CLEAR(made);
    }
    return made;
}

/* --- one position ----------------------------------------------------------------------------- */

static PyObject *
position_of(Config *c, PyObject *row, int *skip)
{
    PyObject *raw[N_FIELDS] = {NULL}, *id = NULL, *isin = NULL, *values[N_FIELDS] = {NULL};
    PyObject *made = NULL;
    int k;
    if (Py_TYPE(row) != (PyTypeObject *)c->wire_position) {
        *skip = 1;
        return NULL;
    }
    for (k = 0; k < N_FIELDS; k++) {
        if ((raw[k] = get(c, c->wire_get[k], row)) == NULL) {
            goto done;
        }
        if (k != INSTRUMENT && !PyUnicode_CheckExact(raw[k])) {
            *skip = 1;
            goto done;
        }
    }
    if (Py_TYPE(raw[INSTRUMENT]) != (PyTypeObject *)c->wire_instrument) {
        *skip = 1;
        goto done;
    }
    if ((id = get(c, c->wire_instrument_get[0], raw[INSTRUMENT])) == NULL
            || (isin = get(c, c->wire_instrument_get[1], raw[INSTRUMENT])) == NULL) {
        goto done;
    }
    if (!PyUnicode_CheckExact(id) || (isin != Py_None && !PyUnicode_CheckExact(isin))) {
        *skip = 1;
        goto done;
    }
    if ((values[ACCOUNT] = uuid_of(c, raw[ACCOUNT], 1, skip)) == NULL
            || (values[INSTRUMENT] = instrument_of(c, id, isin, skip)) == NULL) {
        goto done;
    }
    for (k = QUANTITY; k < N_FIELDS; k++) {
        if (k == AVAILABLE && PyUnicode_Compare(raw[AVAILABLE], raw[QUANTITY]) == 0) {
            /* (often the quantity: nothing locked or pending) */
            Py_INCREF(values[QUANTITY]);
            values[k] = values[QUANTITY];
        }
        else if ((values[k] = decimal_of(c, raw[k], skip)) == NULL) {
            goto done;
        }
    }
    made = make(c, c->position_new, c->position, c->position_set, values, N_FIELDS);
done:
    for (k = 0; k < N_FIELDS; k++) {
        Py_XDECREF(raw[k]);
        Py_XDECREF(values[k]);
    }
    Py_XDECREF(id);
    Py_XDECREF(isin);
    return made;
}

/* --- the module -------------------------------------------------------------------------------- */

/* The n descriptors of a config tuple: all of one type (member descriptors), whose get and set
 * functions (kept in the config) every one of them is read and written through. */
static int
descriptors(Config *c, PyObject *tuple, PyObject **into, Py_ssize_t n, const char *what)
{
    if (!PyTuple_Check(tuple) || PyTuple_Size(tuple) != n) {
        PyErr_Format(PyExc_TypeError, "%s: expected a tuple of %zd descriptors", what, n);
        return -1;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        into[k] = PyTuple_GetItem(tuple, k);  /* borrowed: the config tuple holds them */
        PyTypeObject *type = Py_TYPE(into[k]);
        descrgetfunc get = (descrgetfunc)PyType_GetSlot(type, Py_tp_descr_get);
        descrsetfunc set = (descrsetfunc)PyType_GetSlot(type, Py_tp_descr_set);
        if (get == NULL || set == NULL || (c->get != NULL && (get != c->get || set != c->set))) {
            PyErr_Format(PyExc_TypeError, "%s: expected descriptors of one type", what);
            return -1;
        }
        c->get = get;
        c->set = set;
    }
    return 0;
}

static int
type_new(PyObject *type, newfunc *into)
{
    if (!PyType_Check(type)) {
        PyErr_SetString(PyExc_TypeError, "expected a type");
        return -1;
    }
    *into = (newfunc)PyType_GetSlot((PyTypeObject *)type, Py_tp_new);
    if (*into == NULL) {
        PyErr_SetString(PyExc_TypeError, "a type without tp_new");
        return -1;
    }
    return 0;
}

static PyObject *
build(PyObject *module, PyObject *args)
{
    PyObject *data, *wire_get, *wire_instrument_get, *position_set, *instrument_slot, *uuid_set;
    Config c;
    if (!PyArg_ParseTuple(args, "O!(OOOOOOOO!O!O!nnOOOOO):build", &PyList_Type, &data,
                          &c.wire_position, &c.wire_instrument, &c.position, &c.instrument,
                          &c.uuid, &c.decimal, &c.safe_unknown,
                          &PyDict_Type, &c.uuids, &PyDict_Type, &c.instruments,
                          &PyDict_Type, &c.decimals, &c.memo_limit, &c.decimal_limit,
                          &wire_get, &wire_instrument_get, &position_set, &instrument_slot,
                          &uuid_set)) {
        return NULL;
    }
    c.get = NULL;
    c.set = NULL;
    if (descriptors(&c, wire_get, c.wire_get, N_FIELDS, "wire fields") < 0
            || descriptors(&c, wire_instrument_get, c.wire_instrument_get, 2, "wire instrument") < 0
            || descriptors(&c, position_set, c.position_set, N_FIELDS, "position slots") < 0
            || descriptors(&c, instrument_slot, c.instrument_slot, 2, "instrument slots") < 0
            || descriptors(&c, uuid_set, c.uuid_set, 2, "uuid slots") < 0
            || type_new(c.position, &c.position_new) < 0
            || type_new(c.instrument, &c.instrument_new) < 0
            || type_new(c.uuid, &c.uuid_new) < 0
            || !PyType_Check(c.wire_position) || !PyType_Check(c.wire_instrument)) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_TypeError, "build: bad config");
        }
        return NULL;
    }
    Py_ssize_t n = PyList_Size(data);
    PyObject *result = PyList_New(n);
    if (result == NULL || (c.empty = PyTuple_New(0)) == NULL) {
        Py_XDECREF(result);
        return NULL;
    }
    int skip = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        /* (PyList_GetItem checks the index: only a finalizer the GC runs during an
         * allocation could shrink the list meanwhile, and the page is then refused) */
        PyObject *row = PyList_GetItem(data, i);
        if (row == NULL) {
            PyErr_Clear();
            skip = 1;
            break;
        }
        Py_INCREF(row);
        PyObject *position = position_of(&c, row, &skip);
        Py_DECREF(row);
        if (position == NULL) {
            if (!skip && !PyErr_Occurred()) {
                PyErr_SetString(PyExc_SystemError, "build: a position failed without an error");
            }
            break;
        }
        PyList_SetItem(result, i, position);  /* steals position */
    }
    Py_DECREF(c.empty);
    if (PyErr_Occurred()) {
        Py_DECREF(result);
        return NULL;
    }
    if (skip) {
        Py_DECREF(result);
        Py_RETURN_NONE;
    }
    return result;
}

static PyMethodDef methods[] = {
    {"build", build, METH_VARARGS,
     "build(data, config) -> list[Position] | None: the positions of a page's WirePositions "
     "when every value is canonical, else None (see upvest_async.pagination.positions)."},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot slots[] = {
    {0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_build",
    "Typed positions from a decoded page, in one C pass (see _build.c).",
    0, methods, slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__build(void)
{
    return PyModuleDef_Init(&module);
}
