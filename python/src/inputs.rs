//! Python values into Rust vectors: lists, tuples, numpy arrays of any numeric dtype and
//! anything numpy can view as an array (torch CPU tensors). Every failure names the
//! argument and, where one element is at fault, its position.

use numpy::{PyArray1, PyArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyList, PyString, PyTuple};

/// A group id: verl's `uid` is a string, most other trainers use integers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GroupKey {
    /// An integer id.
    Int(i64),
    /// A string id.
    Str(String),
}

impl std::fmt::Display for GroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GroupKey::Int(i) => write!(f, "{i}"),
            GroupKey::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// `obj` as a one-dimensional numpy array, and its dtype's kind character.
fn as_array<'py>(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<(Bound<'py, PyAny>, char)> {
    let py = obj.py();
    let array = py
        .import("numpy")?
        .call_method1("asarray", (obj,))
        .map_err(|e| {
            PyTypeError::new_err(format!(
                "{name}: cannot be read as an array ({e}); pass a list, a numpy array or a \
                 CPU tensor (`tensor.detach().cpu()`)"
            ))
        })?;
    let ndim: usize = array.getattr("ndim")?.extract()?;
    if ndim != 1 {
        let shape = array.getattr("shape")?.repr()?.to_string();
        return Err(PyValueError::new_err(format!(
            "{name}: expected one value per sample (a 1-D sequence), got shape {shape}"
        )));
    }
    let kind: String = array.getattr("dtype")?.getattr("kind")?.extract()?;
    Ok((array, kind.chars().next().unwrap_or('O')))
}

/// A sequence's values: a numeric numpy array (converted in one call), or the elements one
/// by one (lists and tuples, whose positions errors name exactly; object and string arrays).
enum Values<'py> {
    Numeric(Bound<'py, PyAny>),
    Items(Vec<Bound<'py, PyAny>>),
}

fn numeric_or_items<'py>(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<Values<'py>> {
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        return obj.try_iter()?.collect::<PyResult<_>>().map(Values::Items);
    }
    let (array, kind) = as_array(obj, name)?;
    match kind {
        'f' | 'i' | 'u' | 'b' => Ok(Values::Numeric(array)),
        _ => array
            .call_method0("tolist")?
            .try_iter()?
            .collect::<PyResult<_>>()
            .map(Values::Items),
    }
}

fn is_float(array: &Bound<'_, PyAny>) -> PyResult<bool> {
    let kind: String = array.getattr("dtype")?.getattr("kind")?.extract()?;
    Ok(kind == "f")
}

/// The array converted to `dtype` as a contiguous numpy array.
fn converted<'py, T: numpy::Element + Clone>(
    array: &Bound<'py, PyAny>,
    dtype: &str,
) -> PyResult<Vec<T>> {
    let kwargs = pyo3::types::PyDict::new(array.py());
    kwargs.set_item("copy", false)?;
    let typed = array.call_method("astype", (dtype,), Some(&kwargs))?;
    let typed = typed.cast_into::<PyArray1<T>>()?;
    Ok(typed.readonly().as_array().to_vec())
}

/// The Python type name of `value`, for messages.
fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".into())
}

/// `repr(value)`, for messages.
fn repr(value: &Bound<'_, PyAny>) -> String {
    value
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Element `i` of argument `name` as an integer: Python and numpy integers (`__index__`),
/// not bool, float or str; otherwise a `TypeError` saying `what` was expected.
fn integer(item: &Bound<'_, PyAny>, name: &str, i: usize, what: &str) -> PyResult<i64> {
    let value = (!item.is_instance_of::<PyBool>())
        .then(|| item.extract::<i64>().ok())
        .flatten();
    value.ok_or_else(|| {
        PyTypeError::new_err(format!(
            "{name}[{i}] is {} ({}): {what}",
            repr(item),
            type_name(item)
        ))
    })
}

/// One float per sample; every value finite.
pub fn floats(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<f64>> {
    let values = match numeric_or_items(obj, name)? {
        Values::Numeric(array) => converted::<f64>(&array, "float64")?,
        Values::Items(items) => {
            let mut values = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                // Anything with __float__ (Python and numpy numbers); not None or str.
                let value = item.extract::<f64>().map_err(|_| {
                    PyTypeError::new_err(format!(
                        "{name}[{i}] is {} ({}): expected a number",
                        repr(&item),
                        type_name(&item)
                    ))
                })?;
                values.push(value);
            }
            values
        }
    };
    if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(PyValueError::new_err(format!(
            "{name}[{i}] is {v}: every value must be finite"
        )));
    }
    Ok(values)
}

/// One cluster id per sample; `None` (in a list) or `degenerate_id` marks a degenerate
/// sample. Float arrays are accepted when every value is a whole number.
pub fn clusters(
    obj: &Bound<'_, PyAny>,
    name: &str,
    degenerate_id: i64,
) -> PyResult<Vec<Option<i64>>> {
    let ids: Vec<Option<i64>> = match numeric_or_items(obj, name)? {
        Values::Numeric(array) if !is_float(&array)? => converted::<i64>(&array, "int64")?
            .into_iter()
            .map(Some)
            .collect(),
        Values::Numeric(array) => {
            let values = converted::<f64>(&array, "float64")?;
            let mut ids = Vec::with_capacity(values.len());
            for (i, v) in values.into_iter().enumerate() {
                if v.fract() != 0.0 || !v.is_finite() || v.abs() > 9.0e15 {
                    return Err(PyValueError::new_err(format!(
                        "{name}[{i}] is {v}: a cluster id is a whole number (or None for a \
                         degenerate sample)"
                    )));
                }
                ids.push(Some(v as i64));
            }
            ids
        }
        Values::Items(items) => {
            let mut ids = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                if item.is_none() {
                    ids.push(None);
                } else {
                    let what = "expected an integer cluster id (64-bit) or None";
                    ids.push(Some(integer(&item, name, i, what)?));
                }
            }
            ids
        }
    };
    Ok(ids
        .into_iter()
        .map(|c| c.filter(|&id| id != degenerate_id))
        .collect())
}

/// One group id per sample: integers, or strings (verl's `uid`).
pub fn group_keys(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<GroupKey>> {
    match numeric_or_items(obj, name)? {
        Values::Numeric(array) if is_float(&array)? => Err(PyTypeError::new_err(format!(
            "{name}: group ids must be integers or strings, got an array of floats"
        ))),
        Values::Numeric(array) => Ok(converted::<i64>(&array, "int64")?
            .into_iter()
            .map(GroupKey::Int)
            .collect()),
        Values::Items(items) => {
            let mut keys = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                if item.is_instance_of::<PyString>() {
                    keys.push(GroupKey::Str(item.extract()?));
                } else {
                    let what = "a group id is an integer or a string";
                    keys.push(GroupKey::Int(integer(&item, name, i, what)?));
                }
            }
            Ok(keys)
        }
    }
}

/// Fails unless `len` equals the number of rewards.
pub fn check_len(name: &str, len: usize, rewards: usize) -> PyResult<()> {
    if len != rewards {
        return Err(PyValueError::new_err(format!(
            "{name} has {len} entries but rewards has {rewards}: give one per sample"
        )));
    }
    Ok(())
}
