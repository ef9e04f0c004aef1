//! What an expression may refer to, and how values are fetched at evaluation.

use std::collections::BTreeMap;

/// The type of a value in an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// `true` / `false`.
    Bool,
    /// A whole number.
    Int,
    /// A floating-point number.
    Double,
    /// Text.
    String,
}

impl Type {
    /// The CEL name of the type.
    pub fn name(self) -> &'static str {
        match self {
            Type::Bool => "bool",
            Type::Int => "int",
            Type::Double => "double",
            Type::String => "string",
        }
    }
}

/// Documentation of a variable or function, for references and hints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableDoc {
    /// Name as written in expressions; functions end with `(string)`.
    pub name: String,
    /// Its type (a function's result type).
    pub ty: Type,
    /// What it means.
    pub doc: &'static str,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    pub(crate) ty: Type,
    pub(crate) index: u16,
}

/// The variables and functions expressions may use. Each variable is bound
/// to a slot of its type's kind (numbers, flags or texts), each function to
/// an id; the caller's [`Env`] answers for those slots and ids.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    pub(crate) variables: BTreeMap<String, (Slot, &'static str)>,
    pub(crate) functions: BTreeMap<String, (Slot, &'static str)>,
}

impl Schema {
    /// An empty schema.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares variable `name` of type `ty`, read from `slot` (numbers via
    /// [`Env::number`], bools via [`Env::flag`], strings via [`Env::text`]).
    pub fn variable(mut self, name: &str, ty: Type, slot: u16, doc: &'static str) -> Self {
        self.variables.insert(name.to_owned(), (Slot { ty, index: slot }, doc));
        self
    }

    /// Declares function `name(string) -> ty` answered by
    /// [`Env::call_number`] or [`Env::call_flag`] with `id`.
    pub fn function(mut self, name: &str, ty: Type, id: u16, doc: &'static str) -> Self {
        assert!(matches!(ty, Type::Bool | Type::Int | Type::Double), "functions return bools or numbers");
        self.functions.insert(name.to_owned(), (Slot { ty, index: id }, doc));
        self
    }

    /// The slot and type of variable `name`.
    pub fn lookup(&self, name: &str) -> Option<(u16, Type)> {
        self.variables.get(name).map(|(s, _)| (s.index, s.ty))
    }

    /// Every variable and function, by name.
    pub fn docs(&self) -> Vec<VariableDoc> {
        let vars = self.variables.iter().map(|(n, (s, d))| VariableDoc { name: n.clone(), ty: s.ty, doc: d });
        let funcs =
            self.functions.iter().map(|(n, (s, d))| VariableDoc { name: format!("{n}(string)"), ty: s.ty, doc: d });
        vars.chain(funcs).collect()
    }

    /// The known name closest to `unknown`, for "did you mean" hints.
    pub(crate) fn closest(&self, unknown: &str, functions: bool) -> Option<&str> {
        let names = if functions { &self.functions } else { &self.variables };
        names
            .keys()
            .map(|k| (edit_distance(unknown, k), k))
            .filter(|(d, k)| *d <= (k.len() / 3).max(2))
            .min()
            .map(|(_, k)| k.as_str())
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The values behind a [`Schema`] for one evaluation, typically a feature
/// vector computed once per event.
pub trait Env {
    /// The number in slot `slot` (ints as whole `f64`s).
    fn number(&self, slot: u16) -> f64;
    /// The bool in slot `slot`.
    fn flag(&self, slot: u16) -> bool;
    /// The string in slot `slot`.
    fn text(&self, slot: u16) -> &str;
    /// Number-valued function `function` applied to `arg`.
    fn call_number(&self, function: u16, arg: &str) -> f64;
    /// Bool-valued function `function` applied to `arg`.
    fn call_flag(&self, function: u16, arg: &str) -> bool;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_name_suggests_typos_only() {
        let s = Schema::new().variable("orders_90d", Type::Int, 0, "").variable("revenue_90d", Type::Double, 1, "");
        assert_eq!(s.closest("orders_9d", false), Some("orders_90d"));
        assert_eq!(s.closest("revenu_90d", false), Some("revenue_90d"));
        assert_eq!(s.closest("banana", false), None);
    }
}
