//! The compiled, typed trees and their evaluation.
//!
//! Each node kind knows its result type, so evaluation never inspects a
//! dynamic value: a boolean node returns `bool`, a number node `f64`, a
//! string node `&str`.

use crate::schema::Env;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextTest {
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Debug, Clone)]
pub(crate) enum BoolNode {
    Const(bool),
    Var(u16),
    Call(u16, Box<StrNode>),
    Not(Box<BoolNode>),
    And(Box<[BoolNode]>),
    Or(Box<[BoolNode]>),
    Num(Cmp, Box<NumNode>, Box<NumNode>),
    Text(Cmp, Box<StrNode>, Box<StrNode>),
    Same(bool, Box<BoolNode>, Box<BoolNode>),
    TextIn(Box<StrNode>, Box<[Box<str>]>),
    NumIn(Box<NumNode>, Box<[f64]>),
    TextTest(TextTest, Box<StrNode>, Box<StrNode>),
    Cond(Box<BoolNode>, Box<BoolNode>, Box<BoolNode>),
}

#[derive(Debug, Clone)]
pub(crate) enum NumNode {
    Const(f64),
    Var(u16),
    Call(u16, Box<StrNode>),
    Neg(Box<NumNode>),
    /// `bool` = integer arithmetic (division truncates).
    Arith(Arith, bool, Box<NumNode>, Box<NumNode>),
    Trunc(Box<NumNode>),
    Size(Box<StrNode>),
    Cond(Box<BoolNode>, Box<NumNode>, Box<NumNode>),
}

#[derive(Debug, Clone)]
pub(crate) enum StrNode {
    Const(Box<str>),
    Var(u16),
    Cond(Box<BoolNode>, Box<StrNode>, Box<StrNode>),
}

fn compare<T: PartialOrd + ?Sized>(op: Cmp, a: &T, b: &T) -> bool {
    match op {
        Cmp::Eq => a == b,
        Cmp::Ne => a != b,
        Cmp::Lt => a < b,
        Cmp::Le => a <= b,
        Cmp::Gt => a > b,
        Cmp::Ge => a >= b,
    }
}

impl BoolNode {
    pub(crate) fn eval<E: Env + ?Sized>(&self, env: &E) -> bool {
        match self {
            BoolNode::Const(b) => *b,
            BoolNode::Var(s) => env.flag(*s),
            BoolNode::Call(f, arg) => env.call_flag(*f, arg.eval(env)),
            BoolNode::Not(x) => !x.eval(env),
            BoolNode::And(xs) => xs.iter().all(|x| x.eval(env)),
            BoolNode::Or(xs) => xs.iter().any(|x| x.eval(env)),
            BoolNode::Num(op, a, b) => compare(*op, &a.eval(env), &b.eval(env)),
            BoolNode::Text(op, a, b) => compare(*op, a.eval(env), b.eval(env)),
            BoolNode::Same(eq, a, b) => (a.eval(env) == b.eval(env)) == *eq,
            BoolNode::TextIn(x, list) => {
                let x = x.eval(env);
                list.iter().any(|s| &**s == x)
            }
            BoolNode::NumIn(x, list) => {
                let x = x.eval(env);
                list.contains(&x)
            }
            BoolNode::TextTest(t, a, b) => {
                let (a, b) = (a.eval(env), b.eval(env));
                match t {
                    TextTest::Contains => a.contains(b),
                    TextTest::StartsWith => a.starts_with(b),
                    TextTest::EndsWith => a.ends_with(b),
                }
            }
            BoolNode::Cond(c, t, f) => {
                if c.eval(env) {
                    t.eval(env)
                } else {
                    f.eval(env)
                }
            }
        }
    }
}

impl NumNode {
    pub(crate) fn eval<E: Env + ?Sized>(&self, env: &E) -> f64 {
        match self {
            NumNode::Const(x) => *x,
            NumNode::Var(s) => env.number(*s),
            NumNode::Call(f, arg) => env.call_number(*f, arg.eval(env)),
            NumNode::Neg(x) => -x.eval(env),
            NumNode::Arith(op, int, a, b) => {
                let (a, b) = (a.eval(env), b.eval(env));
                match op {
                    Arith::Add => a + b,
                    Arith::Sub => a - b,
                    Arith::Mul => a * b,
                    Arith::Div if *int && b == 0.0 => f64::NAN,
                    Arith::Div if *int => (a / b).trunc(),
                    Arith::Div => a / b,
                    Arith::Rem if b == 0.0 => f64::NAN,
                    Arith::Rem => a % b,
                }
            }
            NumNode::Trunc(x) => x.eval(env).trunc(),
            NumNode::Size(s) => s.eval(env).chars().count() as f64,
            NumNode::Cond(c, t, f) => {
                if c.eval(env) {
                    t.eval(env)
                } else {
                    f.eval(env)
                }
            }
        }
    }
}

impl StrNode {
    pub(crate) fn eval<'a, E: Env + ?Sized>(&'a self, env: &'a E) -> &'a str {
        match self {
            StrNode::Const(s) => s,
            StrNode::Var(slot) => env.text(*slot),
            StrNode::Cond(c, t, f) => {
                if c.eval(env) {
                    t.eval(env)
                } else {
                    f.eval(env)
                }
            }
        }
    }
}

/// A compiled boolean expression (e.g. an offer's eligibility).
#[derive(Debug, Clone)]
pub struct Predicate {
    pub(crate) root: BoolNode,
    pub(crate) source: String,
    /// Source text of each top-level `&&` clause.
    pub(crate) clauses: Box<[String]>,
}

impl Predicate {
    /// Evaluates the expression against `env`.
    #[inline]
    pub fn eval<E: Env + ?Sized>(&self, env: &E) -> bool {
        self.root.eval(env)
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The first top-level `&&` clause that is false for `env`, as written
    /// (the whole expression when it is not a conjunction); `None` when the
    /// expression holds. For explaining "ineligible" decisions.
    pub fn failing_clause<E: Env + ?Sized>(&self, env: &E) -> Option<&str> {
        match &self.root {
            BoolNode::And(xs) => xs.iter().zip(self.clauses.iter()).find(|(x, _)| !x.eval(env)).map(|(_, s)| &**s),
            other => (!other.eval(env)).then_some(self.source.as_str()),
        }
    }

    /// The values of `key` one of which the expression needs to hold
    /// (sorted, without repeats), or `None` when it can hold without.
    /// For indexing many expressions, e.g. offer filters by the event's
    /// category: `event.category == "wine" && x > 2` needs `"wine"`;
    /// `event.category in ["a", "b"]` or an `||` of such clauses needs one of
    /// their values; `!(event.category == "wine")` needs none.
    pub fn required(&self, key: Requirement) -> Option<Vec<&str>> {
        let mut values = self.root.required(key)?;
        values.sort_unstable();
        values.dedup();
        Some(values)
    }
}

/// Something a predicate can only hold with, that an index can look up
/// (see [`Predicate::required`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// The text variable in this slot equals one of the values.
    Text(u16),
    /// The flag function with this id holds for one of the values.
    Call(u16),
}

impl BoolNode {
    /// The values of `key` without one of which this node is false, or
    /// `None` when it can hold without any (or does not say).
    fn required(&self, key: Requirement) -> Option<Vec<&str>> {
        let var_is = |node: &StrNode| matches!((node, key), (StrNode::Var(s), Requirement::Text(k)) if *s == k);
        match self {
            BoolNode::Text(Cmp::Eq, a, b) => match (&**a, &**b) {
                (var, StrNode::Const(c)) | (StrNode::Const(c), var) if var_is(var) => Some(vec![&**c]),
                _ => None,
            },
            BoolNode::TextIn(x, list) if var_is(x) => Some(list.iter().map(|s| &**s).collect()),
            BoolNode::Call(f, arg) => match (&**arg, key) {
                (StrNode::Const(c), Requirement::Call(k)) if *f == k => Some(vec![&**c]),
                _ => None,
            },
            // One clause that needs a value is enough; the narrowest is best.
            BoolNode::And(xs) => xs.iter().filter_map(|x| x.required(key)).min_by_key(Vec::len),
            // Every branch must need one.
            BoolNode::Or(xs) => xs.iter().try_fold(Vec::new(), |mut all, x| {
                all.extend(x.required(key)?);
                Some(all)
            }),
            BoolNode::Const(false) => Some(Vec::new()),
            _ => None,
        }
    }
}

/// A compiled numeric expression (e.g. an offer's margin formula).
#[derive(Debug, Clone)]
pub struct Formula {
    pub(crate) root: NumNode,
    pub(crate) source: String,
}

impl Formula {
    /// Evaluates the expression against `env`.
    #[inline]
    pub fn eval<E: Env + ?Sized>(&self, env: &E) -> f64 {
        self.root.eval(env)
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }
}
