//! Parsing, type checking and lowering to the typed trees of [`crate::eval`].

use std::fmt;

use cel_parser::{
    ast::{operators as op, CallExpr, Expr, IdedExpr},
    reference::Val,
    Parser,
};

use crate::{
    eval::{Arith, BoolNode, Cmp, Formula, NumNode, Predicate, StrNode, TextTest},
    schema::{Schema, Type},
};

/// One thing wrong with an expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong, quoting the offending part of the expression.
    pub message: String,
    /// What to do about it.
    pub hint: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; {}", self.message, self.hint)
    }
}

/// An expression that cannot be compiled; lists every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ExprError {
    /// The problems, in the order found.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Compiles a boolean expression, e.g. `orders_90d >= 3 && has_app`.
pub fn compile_predicate(source: &str, schema: &Schema) -> Result<Predicate, ExprError> {
    let ast = parse(source)?;
    let mut c = Compiler { schema, problems: Vec::new() };
    let typed = c.lower(&ast);
    match typed {
        Some(Typed::Bool(root)) if c.problems.is_empty() => {
            let mut conjuncts = Vec::new();
            flatten_and(&ast, &mut conjuncts);
            let clauses = conjuncts.into_iter().map(render).collect();
            Ok(Predicate { root, source: source.to_owned(), clauses })
        }
        Some(other) if c.problems.is_empty() => Err(ExprError {
            problems: vec![Problem {
                message: format!("the expression yields {}, not bool", other.type_name()),
                hint: "a condition must be true or false; add a comparison such as `>= 1`".into(),
            }],
        }),
        _ => Err(ExprError { problems: c.problems }),
    }
}

/// Compiles a numeric expression, e.g. `avg_basket_margin_90d * 0.8`.
pub fn compile_formula(source: &str, schema: &Schema) -> Result<Formula, ExprError> {
    let ast = parse(source)?;
    let mut c = Compiler { schema, problems: Vec::new() };
    match c.lower(&ast) {
        Some(Typed::Num(root, _)) if c.problems.is_empty() => Ok(Formula { root, source: source.to_owned() }),
        Some(other) if c.problems.is_empty() => Err(ExprError {
            problems: vec![Problem {
                message: format!("the expression yields {}, not a number", other.type_name()),
                hint: "a formula must compute an amount, e.g. `avg_basket_margin_90d * 0.8`".into(),
            }],
        }),
        _ => Err(ExprError { problems: c.problems }),
    }
}

/// The longest expression accepted, in bytes.
pub const MAX_EXPRESSION_BYTES: usize = 4_096;
/// The deepest nesting of brackets accepted: `((x))` is 2.
pub const MAX_NESTING: usize = 32;

/// Refuses what the parser cannot take safely, before it recurses: the
/// generated parser recurses once per bracket, so 20,000 nested
/// parentheses overflow the stack (an abort, which `catch_unwind` cannot
/// catch). Long flat chains (`a || b || …`) are loops, bounded by the size.
fn check_bounds(source: &str) -> Result<(), ExprError> {
    let fail = |message: String, hint: &str| Err(ExprError { problems: vec![Problem { message, hint: hint.into() }] });
    if source.len() > MAX_EXPRESSION_BYTES {
        return fail(
            format!("the expression is {} bytes; at most {MAX_EXPRESSION_BYTES} are accepted", source.len()),
            "split the rule: put shared conditions in the campaign, or compute a feature",
        );
    }
    let (mut depth, mut deepest, mut quote, mut escaped) = (0usize, 0usize, None::<char>, false);
    for c in source.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' => quote = Some(c),
                '(' | '[' | '{' => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                ')' | ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
    }
    if deepest > MAX_NESTING {
        return fail(
            format!("brackets are nested {deepest} deep; at most {MAX_NESTING} are accepted"),
            "remove redundant parentheses; `&&` and `||` chains need none",
        );
    }
    Ok(())
}

fn parse(source: &str) -> Result<IdedExpr, ExprError> {
    check_bounds(source)?;
    if source.trim().is_empty() {
        return Err(ExprError {
            problems: vec![Problem {
                message: "the expression is empty".into(),
                hint: "write a CEL expression".into(),
            }],
        });
    }
    // The parser is generated code; a panic on odd input must not take the
    // config reader down with it.
    let parsed = std::panic::catch_unwind(|| Parser::new().parse(source));
    match parsed {
        Ok(Ok(ast)) => Ok(ast),
        Ok(Err(errors)) => Err(ExprError {
            problems: errors
                .errors
                .iter()
                .map(|e| Problem {
                    message: format!("syntax error at line {} column {}: {}", e.pos.0, e.pos.1, e.msg),
                    hint: "check the CEL syntax (https://cel.dev): strings in double quotes, `&&`/`||`, `==`".into(),
                })
                .collect(),
        }),
        Err(_) => Err(ExprError {
            problems: vec![Problem {
                message: "syntax error: the expression is incomplete or malformed".into(),
                hint: "check that every operator has both operands and every bracket is closed (https://cel.dev)"
                    .into(),
            }],
        }),
    }
}

/// Keeps the panics of the generated CEL parser out of the process's
/// stderr: [`compile_predicate`] and [`compile_formula`] catch them and
/// report a syntax error, so the default hook's backtrace would only alarm
/// whoever reads the logs. Other panics still reach the previous hook.
/// Call once at start-up.
pub fn quiet_parser_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.location().is_some_and(|l| l.file().contains("antlr4rust")) {
            return;
        }
        previous(info);
    }));
}

fn flatten_and<'a>(e: &'a IdedExpr, out: &mut Vec<&'a IdedExpr>) {
    match &e.expr {
        Expr::Call(CallExpr { func_name, target: None, args }) if func_name == op::LOGICAL_AND => {
            for a in args {
                flatten_and(a, out);
            }
        }
        _ => out.push(e),
    }
}

/// Renders an expression back to CEL text, for messages.
fn render(e: &IdedExpr) -> String {
    match &e.expr {
        Expr::Literal(v) => match v {
            Val::String(s) => format!("{s:?}"),
            Val::Boolean(b) => b.to_string(),
            Val::Int(i) => i.to_string(),
            Val::UInt(u) => format!("{u}u"),
            Val::Double(d) => format!("{d:?}"),
            Val::Bytes(_) => "b\"…\"".into(),
            Val::Null => "null".into(),
        },
        Expr::Ident(name) => name.clone(),
        Expr::Select(s) => format!("{}.{}", render(&s.operand), s.field),
        Expr::List(l) => format!("[{}]", l.elements.iter().map(render).collect::<Vec<_>>().join(", ")),
        Expr::Call(c) => {
            let args: Vec<String> = c.args.iter().map(render).collect();
            let infix = |sym: &str| format!("{} {sym} {}", args[0], args[1]);
            match c.func_name.as_str() {
                op::LOGICAL_AND => args.join(" && "),
                op::LOGICAL_OR => format!("({})", args.join(" || ")),
                op::LOGICAL_NOT => format!("!{}", args[0]),
                op::NEGATE => format!("-{}", args[0]),
                op::CONDITIONAL => format!("{} ? {} : {}", args[0], args[1], args[2]),
                op::IN => infix("in"),
                name if args.len() == 2 && binary_symbol(name).is_some() => {
                    infix(binary_symbol(name).expect("checked"))
                }
                name => match &c.target {
                    Some(t) => format!("{}.{name}({})", render(t), args.join(", ")),
                    None => format!("{name}({})", args.join(", ")),
                },
            }
        }
        _ => "…".into(),
    }
}

fn binary_symbol(func: &str) -> Option<&'static str> {
    Some(match func {
        op::EQUALS => "==",
        op::NOT_EQUALS => "!=",
        op::LESS => "<",
        op::LESS_EQUALS => "<=",
        op::GREATER => ">",
        op::GREATER_EQUALS => ">=",
        op::ADD => "+",
        op::SUBSTRACT => "-",
        op::MULTIPLY => "*",
        op::DIVIDE => "/",
        op::MODULO => "%",
        _ => return None,
    })
}

enum Typed {
    Bool(BoolNode),
    Num(NumNode, Type),
    Str(StrNode),
}

impl Typed {
    fn type_name(&self) -> &'static str {
        match self {
            Typed::Bool(_) => "bool",
            Typed::Num(_, t) => t.name(),
            Typed::Str(_) => "string",
        }
    }
}

struct Compiler<'s> {
    schema: &'s Schema,
    problems: Vec<Problem>,
}

impl Compiler<'_> {
    fn problem(&mut self, message: String, hint: impl Into<String>) -> Option<Typed> {
        self.problems.push(Problem { message, hint: hint.into() });
        None
    }

    fn lower(&mut self, e: &IdedExpr) -> Option<Typed> {
        match &e.expr {
            Expr::Literal(v) => self.literal(v),
            Expr::Ident(name) => self.variable(name),
            Expr::Select(s) if !s.test => match dotted(e) {
                Some(name) => self.variable(&name),
                None => self.problem(
                    format!("`{}` selects a field of a computed value", render(e)),
                    "only variables like `event.category` have fields",
                ),
            },
            Expr::Call(c) => self.call(e, c),
            Expr::List(_) => self.problem(
                format!("list `{}` is only allowed on the right of `in`", render(e)),
                "write `x in [\"a\", \"b\"]`",
            ),
            _ => self.problem(
                format!("`{}` is not supported in offer expressions", render(e)),
                "use comparisons, &&, ||, !, ?:, arithmetic, `in [...]` and the documented variables and functions",
            ),
        }
    }

    fn literal(&mut self, v: &Val) -> Option<Typed> {
        Some(match v {
            Val::Int(i) => Typed::Num(NumNode::Const(*i as f64), Type::Int),
            Val::UInt(u) => Typed::Num(NumNode::Const(*u as f64), Type::Int),
            Val::Double(d) => Typed::Num(NumNode::Const(*d), Type::Double),
            Val::String(s) => Typed::Str(StrNode::Const(s.as_str().into())),
            Val::Boolean(b) => Typed::Bool(BoolNode::Const(*b)),
            Val::Null => return self.problem("`null` is not supported".into(), "every variable always has a value"),
            Val::Bytes(_) => return self.problem("bytes literals are not supported".into(), "use a string"),
        })
    }

    fn variable(&mut self, name: &str) -> Option<Typed> {
        if let Some((slot, _)) = self.schema.variables.get(name) {
            let i = slot.index;
            return Some(match slot.ty {
                Type::Bool => Typed::Bool(BoolNode::Var(i)),
                Type::Int | Type::Double => Typed::Num(NumNode::Var(i), slot.ty),
                Type::String => Typed::Str(StrNode::Var(i)),
            });
        }
        let prefix = format!("{name}.");
        let fields: Vec<&str> =
            self.schema.variables.keys().filter(|k| k.starts_with(&prefix)).map(String::as_str).collect();
        if !fields.is_empty() {
            return self
                .problem(format!("`{name}` is not a value"), format!("use one of its fields: {}", fields.join(", ")));
        }
        let hint = match self.schema.closest(name, false) {
            Some(close) => format!("did you mean `{close}`? The README lists every variable"),
            None => "the README lists every variable an offer can use".into(),
        };
        self.problem(format!("unknown variable `{name}`"), hint)
    }

    fn call(&mut self, e: &IdedExpr, c: &CallExpr) -> Option<Typed> {
        let name = c.func_name.as_str();
        if c.target.is_none() && self.schema.functions.contains_key(name) {
            return self.schema_function(e, c);
        }
        match (name, c.args.len(), c.target.is_some()) {
            (op::LOGICAL_AND | op::LOGICAL_OR, _, false) => {
                let lowered: Vec<Option<Typed>> = c.args.iter().map(|a| self.lower(a)).collect();
                let mut parts = Vec::new();
                for (a, typed) in c.args.iter().zip(lowered) {
                    match typed? {
                        Typed::Bool(BoolNode::And(xs)) if name == op::LOGICAL_AND => parts.extend(xs.into_vec()),
                        Typed::Bool(BoolNode::Or(xs)) if name == op::LOGICAL_OR => parts.extend(xs.into_vec()),
                        Typed::Bool(b) => parts.push(b),
                        other => return self.not_bool(a, &other, if name == op::LOGICAL_AND { "&&" } else { "||" }),
                    }
                }
                let parts = parts.into_boxed_slice();
                Some(Typed::Bool(if name == op::LOGICAL_AND { BoolNode::And(parts) } else { BoolNode::Or(parts) }))
            }
            (op::LOGICAL_NOT, 1, false) => match self.lower(&c.args[0])? {
                Typed::Bool(b) => Some(Typed::Bool(BoolNode::Not(Box::new(b)))),
                other => self.not_bool(&c.args[0], &other, "!"),
            },
            (op::NEGATE, 1, false) => match self.lower(&c.args[0])? {
                Typed::Num(n, t) => Some(Typed::Num(NumNode::Neg(Box::new(n)), t)),
                other => self.problem(
                    format!("`-` needs a number, `{}` is {}", render(&c.args[0]), other.type_name()),
                    "negate numbers only",
                ),
            },
            (op::CONDITIONAL, 3, false) => self.conditional(c),
            (op::IN, 2, false) => self.membership(e, c),
            (op::EQUALS | op::NOT_EQUALS | op::LESS | op::LESS_EQUALS | op::GREATER | op::GREATER_EQUALS, 2, false) => {
                self.comparison(e, c)
            }
            (op::ADD | op::SUBSTRACT | op::MULTIPLY | op::DIVIDE | op::MODULO, 2, false) => self.arithmetic(e, c),
            ("size", 1, false) | ("size", 0, true) => {
                let arg = c.target.as_deref().unwrap_or_else(|| &c.args[0]);
                match self.lower(arg)? {
                    Typed::Str(s) => Some(Typed::Num(NumNode::Size(Box::new(s)), Type::Int)),
                    other => self.problem(
                        format!("size() needs a string, `{}` is {}", render(arg), other.type_name()),
                        "size() counts the characters of a string",
                    ),
                }
            }
            ("double" | "int", 1, false) => match self.lower(&c.args[0])? {
                Typed::Num(n, _) if name == "double" => Some(Typed::Num(n, Type::Double)),
                Typed::Num(n, Type::Int) => Some(Typed::Num(n, Type::Int)),
                Typed::Num(n, _) => Some(Typed::Num(NumNode::Trunc(Box::new(n)), Type::Int)),
                other => self.problem(
                    format!("{name}() needs a number, `{}` is {}", render(&c.args[0]), other.type_name()),
                    "convert numbers only",
                ),
            },
            ("contains" | "startsWith" | "endsWith", 1, true) => {
                let target = c.target.as_deref().expect("matched target");
                let test = match name {
                    "contains" => TextTest::Contains,
                    "startsWith" => TextTest::StartsWith,
                    _ => TextTest::EndsWith,
                };
                match (self.lower(target)?, self.lower(&c.args[0])?) {
                    (Typed::Str(a), Typed::Str(b)) => {
                        Some(Typed::Bool(BoolNode::TextTest(test, Box::new(a), Box::new(b))))
                    }
                    _ => self.problem(format!("`{}` needs strings on both sides", render(e)), "compare text with text"),
                }
            }
            _ => {
                let hint = match self.schema.closest(name, true) {
                    Some(close) => format!("did you mean `{close}`? The README lists every function"),
                    None => format!(
                        "available functions: {}, size, double, int, contains, startsWith, endsWith",
                        self.schema.functions.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                };
                self.problem(format!("unknown function `{}` in `{}`", name, render(e)), hint)
            }
        }
    }

    fn not_bool(&mut self, e: &IdedExpr, got: &Typed, operator: &str) -> Option<Typed> {
        self.problem(
            format!("`{operator}` needs bool operands, `{}` is {}", render(e), got.type_name()),
            "compare it, e.g. `orders_90d > 0`",
        )
    }

    fn schema_function(&mut self, e: &IdedExpr, c: &CallExpr) -> Option<Typed> {
        let (slot, _) = self.schema.functions[c.func_name.as_str()];
        if c.args.len() != 1 {
            return self.problem(
                format!("`{}` takes exactly one string argument, got {}", render(e), c.args.len()),
                format!("write e.g. {}(\"sushi\")", c.func_name),
            );
        }
        let Typed::Str(arg) = self.lower(&c.args[0])? else {
            return self.problem(
                format!("the argument of `{}` must be a string", render(e)),
                format!("quote it: {}(\"…\")", c.func_name),
            );
        };
        let arg = Box::new(arg);
        Some(match slot.ty {
            Type::Bool => Typed::Bool(BoolNode::Call(slot.index, arg)),
            t => Typed::Num(NumNode::Call(slot.index, arg), t),
        })
    }

    fn conditional(&mut self, c: &CallExpr) -> Option<Typed> {
        let cond = match self.lower(&c.args[0])? {
            Typed::Bool(b) => Box::new(b),
            other => return self.not_bool(&c.args[0], &other, "? :"),
        };
        match (self.lower(&c.args[1])?, self.lower(&c.args[2])?) {
            (Typed::Bool(t), Typed::Bool(f)) => Some(Typed::Bool(BoolNode::Cond(cond, Box::new(t), Box::new(f)))),
            (Typed::Str(t), Typed::Str(f)) => Some(Typed::Str(StrNode::Cond(cond, Box::new(t), Box::new(f)))),
            (Typed::Num(t, tt), Typed::Num(f, ft)) if tt == ft => {
                Some(Typed::Num(NumNode::Cond(cond, Box::new(t), Box::new(f)), tt))
            }
            (t, f) => self.problem(
                format!(
                    "the branches of `? :` differ in type: `{}` is {}, `{}` is {}",
                    render(&c.args[1]),
                    t.type_name(),
                    render(&c.args[2]),
                    f.type_name()
                ),
                "give both branches the same type",
            ),
        }
    }

    fn membership(&mut self, e: &IdedExpr, c: &CallExpr) -> Option<Typed> {
        let Expr::List(list) = &c.args[1].expr else {
            return self.problem(
                format!("`{}`: `in` needs a list literal on the right", render(e)),
                "write `x in [\"a\", \"b\"]`",
            );
        };
        let needle = self.lower(&c.args[0])?;
        let mut texts = Vec::new();
        let mut numbers = Vec::new();
        for el in &list.elements {
            match (&needle, &el.expr) {
                (Typed::Str(_), Expr::Literal(Val::String(s))) => texts.push(Box::<str>::from(s.as_str())),
                (Typed::Num(..), Expr::Literal(Val::Int(i))) => numbers.push(*i as f64),
                (Typed::Num(..), Expr::Literal(Val::UInt(u))) => numbers.push(*u as f64),
                (Typed::Num(..), Expr::Literal(Val::Double(d))) => numbers.push(*d),
                _ => {
                    return self.problem(
                        format!(
                            "`{}`: list element `{}` is not a {} literal like `{}`",
                            render(e),
                            render(el),
                            needle.type_name(),
                            render(&c.args[0])
                        ),
                        "list only literals of the tested value's type",
                    )
                }
            }
        }
        Some(Typed::Bool(match needle {
            Typed::Str(s) => BoolNode::TextIn(Box::new(s), texts.into_boxed_slice()),
            Typed::Num(n, _) => BoolNode::NumIn(Box::new(n), numbers.into_boxed_slice()),
            Typed::Bool(_) => {
                return self.problem(format!("`{}`: `in` does not apply to bool", render(e)), "test the bool directly")
            }
        }))
    }

    fn comparison(&mut self, e: &IdedExpr, c: &CallExpr) -> Option<Typed> {
        let cmp = match c.func_name.as_str() {
            op::EQUALS => Cmp::Eq,
            op::NOT_EQUALS => Cmp::Ne,
            op::LESS => Cmp::Lt,
            op::LESS_EQUALS => Cmp::Le,
            op::GREATER => Cmp::Gt,
            _ => Cmp::Ge,
        };
        let (a, b) = (self.lower(&c.args[0]), self.lower(&c.args[1]));
        let (a, b) = (a?, b?);
        match (a, b) {
            (Typed::Num(a, _), Typed::Num(b, _)) => Some(Typed::Bool(BoolNode::Num(cmp, Box::new(a), Box::new(b)))),
            (Typed::Str(a), Typed::Str(b)) => Some(Typed::Bool(BoolNode::Text(cmp, Box::new(a), Box::new(b)))),
            (Typed::Bool(a), Typed::Bool(b)) if matches!(cmp, Cmp::Eq | Cmp::Ne) => {
                Some(Typed::Bool(BoolNode::Same(cmp == Cmp::Eq, Box::new(a), Box::new(b))))
            }
            (a, b) => {
                let what = if a.type_name() == b.type_name() { "order" } else { "compare" };
                self.problem(
                    format!(
                        "cannot {what} {} `{}` with {} `{}` in `{}`",
                        a.type_name(),
                        render(&c.args[0]),
                        b.type_name(),
                        render(&c.args[1]),
                        render(e)
                    ),
                    type_hint(&a, &b),
                )
            }
        }
    }

    fn arithmetic(&mut self, e: &IdedExpr, c: &CallExpr) -> Option<Typed> {
        let arith = match c.func_name.as_str() {
            op::ADD => Arith::Add,
            op::SUBSTRACT => Arith::Sub,
            op::MULTIPLY => Arith::Mul,
            op::DIVIDE => Arith::Div,
            _ => Arith::Rem,
        };
        let (a, b) = (self.lower(&c.args[0]), self.lower(&c.args[1]));
        match (a?, b?) {
            (Typed::Num(a, ta), Typed::Num(b, tb)) if ta == tb => {
                Some(Typed::Num(NumNode::Arith(arith, ta == Type::Int, Box::new(a), Box::new(b)), ta))
            }
            (Typed::Num(_, ta), Typed::Num(_, tb)) => self.problem(
                format!(
                    "`{}` mixes {} `{}` and {} `{}`",
                    render(e),
                    ta.name(),
                    render(&c.args[0]),
                    tb.name(),
                    render(&c.args[1])
                ),
                "CEL does not mix int and double in arithmetic: write the literal as a double (`2.0`) or convert with double(…)",
            ),
            (a, b) => self.problem(
                format!("`{}` needs numbers, got {} and {}", render(e), a.type_name(), b.type_name()),
                "arithmetic works on numbers only",
            ),
        }
    }
}

fn type_hint(a: &Typed, b: &Typed) -> String {
    match (a, b) {
        (Typed::Num(..), Typed::Str(_)) | (Typed::Str(_), Typed::Num(..)) => {
            "remove the quotes around the number, or compare text with text".into()
        }
        (Typed::Bool(_), _) | (_, Typed::Bool(_)) => "use the bool directly, e.g. `has_app` or `!has_app`".into(),
        _ => "compare values of the same type".into(),
    }
}

fn dotted(e: &IdedExpr) -> Option<String> {
    match &e.expr {
        Expr::Ident(n) => Some(n.clone()),
        Expr::Select(s) if !s.test => Some(format!("{}.{}", dotted(&s.operand)?, s.field)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Env;

    struct Vars {
        numbers: Vec<f64>,
        flags: Vec<bool>,
        texts: Vec<&'static str>,
    }

    impl Env for Vars {
        fn number(&self, slot: u16) -> f64 {
            self.numbers[slot as usize]
        }
        fn flag(&self, slot: u16) -> bool {
            self.flags[slot as usize]
        }
        fn text(&self, slot: u16) -> &str {
            self.texts[slot as usize]
        }
        fn call_number(&self, _: u16, arg: &str) -> f64 {
            if arg == "sushi" {
                0.4
            } else {
                0.0
            }
        }
        fn call_flag(&self, _: u16, arg: &str) -> bool {
            arg == "SKU-1"
        }
    }

    fn schema() -> Schema {
        Schema::new()
            .variable("orders_90d", Type::Int, 0, "orders")
            .variable("revenue_90d", Type::Double, 1, "revenue")
            .variable("days_since_last_purchase", Type::Int, 2, "recency")
            .variable("has_app", Type::Bool, 0, "app")
            .variable("event.category", Type::String, 0, "category")
            .function("category_share", Type::Double, 0, "share")
            .function("in_cart", Type::Bool, 0, "cart")
    }

    fn vars() -> Vars {
        Vars { numbers: vec![4.0, 120.5, 35.0], flags: vec![true], texts: vec!["sushi"] }
    }

    fn holds(src: &str) -> bool {
        compile_predicate(src, &schema()).unwrap_or_else(|e| panic!("{src}: {e}")).eval(&vars())
    }

    #[test]
    fn required_values_are_those_without_which_the_expression_is_false() {
        use crate::Requirement::{Call, Text};
        let required = |src: &str, key| {
            let p = compile_predicate(src, &schema()).unwrap();
            p.required(key).map(|v| v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        let some = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(required(r#"event.category == "wine" && orders_90d > 2"#, Text(0)), some(&["wine"]));
        assert_eq!(required(r#"orders_90d > 2 && "wine" == event.category"#, Text(0)), some(&["wine"]));
        assert_eq!(required(r#"event.category in ["b", "a", "b"]"#, Text(0)), some(&["a", "b"]));
        assert_eq!(
            required(r#"(event.category == "a" && has_app) || event.category == "c""#, Text(0)),
            some(&["a", "c"])
        );
        assert_eq!(required(r#"in_cart("x") && event.category in ["a", "b"]"#, Call(0)), some(&["x"]));
        assert_eq!(required(r#"event.category == "a" || has_app"#, Text(0)), None, "one branch needs nothing");
        assert_eq!(required(r#"!(event.category == "a")"#, Text(0)), None);
        assert_eq!(required(r#"event.category != "a""#, Text(0)), None);
        assert_eq!(required(r#"event.category == "a""#, Text(1)), None, "another slot");
        assert_eq!(required(r#"in_cart("x")"#, Call(1)), None, "another function");
        assert_eq!(required("false", Text(0)), some(&[]), "never holds");
    }

    #[test]
    fn evaluates_the_supported_subset() {
        assert!(holds("orders_90d >= 3 && revenue_90d > 100.0 && has_app && category_share(\"sushi\") > 0.3"));
        assert!(!holds("orders_90d >= 5 || !has_app"));
        assert!(holds("event.category in [\"sushi\", \"rolls\"]"));
        assert!(!holds("event.category in [\"wine\"]"));
        assert!(holds("orders_90d in [1, 4]"));
        assert!(holds("in_cart(\"SKU-1\") && !in_cart(\"SKU-2\")"));
        assert!(holds("(orders_90d > 10 ? 1 : 2) == 2"));
        assert!(holds("orders_90d / 3 == 1 && orders_90d % 3 == 1"), "int division truncates");
        assert!(holds("revenue_90d / 2.0 > 60.0"));
        assert!(holds("double(orders_90d) * 1.5 == 6.0 && int(revenue_90d) == 120"));
        assert!(holds("event.category.startsWith(\"su\") && size(event.category) == 5"));
        assert!(holds("-orders_90d < 0 && orders_90d > 3.5"), "int and double compare");
        assert!(holds("has_app == true && event.category != \"wine\""));
        assert!(!holds("orders_90d / 0 > 0 || orders_90d / 0 <= 0"), "division by zero is false everywhere");
    }

    #[test]
    fn names_the_failing_clause() {
        let p = compile_predicate("orders_90d >= 3 && (has_app && revenue_90d > 500.0)", &schema()).unwrap();
        assert_eq!(p.failing_clause(&vars()), Some("revenue_90d > 500.0"));
        let p = compile_predicate("orders_90d >= 3", &schema()).unwrap();
        assert_eq!(p.failing_clause(&vars()), None);
    }

    fn problems(src: &str) -> String {
        compile_predicate(src, &schema()).map(|_| ()).expect_err(src).to_string()
    }

    #[test]
    fn type_errors_name_the_variable_and_say_what_to_do() {
        let e = problems("orders_90d > \"3\"");
        assert!(e.contains("cannot compare int `orders_90d` with string `\"3\"`"), "{e}");
        assert!(e.contains("remove the quotes"), "{e}");
        let e = problems("orders_9d > 3");
        assert!(e.contains("unknown variable `orders_9d`") && e.contains("did you mean `orders_90d`"), "{e}");
        let e = problems("revenue_90d * 2 > 10.0");
        assert!(e.contains("mixes double `revenue_90d` and int `2`"), "{e}");
        let e = problems("orders_90d + 1");
        assert!(e.contains("yields int, not bool"), "{e}");
        let e = problems("category_shar(\"x\") > 0.1");
        assert!(e.contains("did you mean `category_share`"), "{e}");
        let e = problems("event > 1");
        assert!(e.contains("use one of its fields: event.category"), "{e}");
        let e = problems("has_app &&");
        assert!(e.contains("syntax error"), "{e}");
        let e = problems("[1].exists(x, x > 0)");
        assert!(e.contains("not supported"), "{e}");
    }

    #[test]
    fn reports_every_problem_at_once() {
        let err = compile_predicate("orders_9d > 1 && revenu_90d > 2.0", &schema()).unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
    }

    #[test]
    fn deep_nesting_and_huge_expressions_are_refused_before_parsing() {
        let deep = |n: usize| format!("{}x{} > 1", "(".repeat(n), ")".repeat(n));
        assert!(problems(&deep(20_000)).contains("40005 bytes"), "{}", problems(&deep(20_000)));
        assert!(problems(&deep(2_000)).contains("nested 2000 deep"), "{}", problems(&deep(2_000)));
        let at_limit = format!("{}orders_90d{} > 1", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
        assert!(holds(&at_limit), "{MAX_NESTING} levels still compile");
        let long = vec!["orders_90d > 1"; 1_000].join(" || ");
        assert!(problems(&long).contains("bytes; at most"));
        let in_string = format!("event.category == \"{}\" || orders_90d > 2", "(".repeat(100));
        assert!(holds(&in_string), "brackets in strings do not count");
    }

    #[test]
    fn formulas_compute_numbers() {
        let f = compile_formula("revenue_90d * 0.25 + double(orders_90d)", &schema()).unwrap();
        assert!((f.eval(&vars()) - 34.125).abs() < 1e-9);
        assert!(compile_formula("has_app", &schema()).unwrap_err().to_string().contains("not a number"));
    }
}
