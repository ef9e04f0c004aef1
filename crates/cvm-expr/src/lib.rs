//! CEL expressions, type-checked once against a [`Schema`] and compiled to a
//! typed evaluator.
//!
//! Offer eligibility is written in CEL (the Common Expression Language), a
//! maintained standard with a published grammar, so marketers and tools can
//! rely on its syntax and semantics instead of a home-made rule language.
//! Parsing uses `cel-parser` (the ANTLR grammar of the CEL spec).
//!
//! A general CEL interpreter is too slow for the hot path: it walks a
//! dynamically typed tree and builds a context map per evaluation. Here the
//! parsed expression is checked against the schema of the variables the
//! engine provides and lowered to three small typed trees (boolean, number,
//! string nodes). Variables become slots in a feature vector the caller
//! computes once per event, so evaluation is a few pointer hops and float
//! compares — tens of nanoseconds for a typical four-clause rule.
//!
//! The supported subset is what rules over a customer profile need:
//! literals (bool, int, uint, double, string), variables (including dotted
//! names such as `event.category`), `!`, unary `-`, `&&`, `||`, `? :`,
//! comparisons, `+ - * / %` on numbers, `in` over list literals, `size()`,
//! `double()`/`int()`, the string methods `contains`, `startsWith` and
//! `endsWith`, and schema functions taking one string (e.g.
//! `category_share("sushi")`). As in CEL, `int` and `double` never mix in
//! arithmetic (write `2.0` or `double(x)`), while comparisons across them
//! are allowed. Numbers are evaluated as `f64` (ints are exact to 2^53); a
//! division by zero yields NaN, which makes every comparison false.

mod check;
mod eval;
mod schema;

pub use check::{
    compile_formula, compile_predicate, quiet_parser_panics, ExprError, Problem, MAX_EXPRESSION_BYTES, MAX_NESTING,
};
pub use eval::{Formula, Predicate, Requirement};
pub use schema::{Env, Schema, Type, VariableDoc};
