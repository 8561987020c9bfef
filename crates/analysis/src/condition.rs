//! A small, safe condition language for Argo-style `successCondition` / `failureCondition`.
//!
//! Supported (a subset of Argo's expr-lang, enough for its documented examples):
//! - values: numbers (`0.01`, `-1`, `1e-3`), `result` (the measurement's value), `result[i]`
//!   (the i-th raw sample, from 0), `len(result)` (the number of raw samples);
//! - comparisons: `<`, `<=`, `>`, `>=`, `==`, `!=` between two values;
//! - `isNaN(value)`, `isInf(value)`, `true`, `false`;
//! - `!` / `not`, `&&` / `and`, `||` / `or`, and parentheses, with the usual precedence.
//!
//! Comparisons with NaN are false (IEEE). `result[i]` past the end is an evaluation error,
//! which Argo counts as a measurement error. Nothing else (functions, arithmetic, strings) is
//! accepted: a condition is parsed once, at plan validation, and the error says where it
//! stopped.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A parsed condition.
///
/// ```
/// use cutover_analysis::{Condition, ConditionInput};
/// let c = Condition::parse("result[0] < 0.01 && !isNaN(result)")?;
/// assert_eq!(c.evaluate(&ConditionInput { value: 0.002, values: &[0.002] }), Ok(true));
/// assert_eq!(c.evaluate(&ConditionInput { value: f64::NAN, values: &[f64::NAN] }), Ok(false));
/// assert!(Condition::parse("result <").is_err());
/// # Ok::<(), cutover_analysis::ConditionError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    source: String,
    expr: Expr,
}

/// What a condition is evaluated against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConditionInput<'a> {
    /// `result`: the measurement's value (an aggregate of the samples, or a rate for counts).
    pub value: f64,
    /// `result[i]` and `len(result)`: the raw samples.
    pub values: &'a [f64],
}

/// A condition that does not parse: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at column {column}: {message}")]
pub struct ConditionError {
    /// 1-based character column where parsing stopped.
    pub column: usize,
    /// What was expected.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Number(f64),
    Result,
    Index(usize),
    Len,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Bool(bool),
    Compare(Value, Cmp, Value),
    IsNan(Value),
    IsInf(Value),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(f64),
    Ident(String),
    Op(&'static str),
}

fn tokenize(s: &str) -> Result<Vec<(usize, Token)>, ConditionError> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c.is_ascii_digit() || c == '.' {
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || chars[i] == '.'
                    || ((chars[i] == '-' || chars[i] == '+') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let n = text.parse::<f64>().map_err(|_| ConditionError {
                column: start + 1,
                message: format!("`{text}` is not a number"),
            })?;
            out.push((start, Token::Number(n)));
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((start, Token::Ident(chars[start..i].iter().collect())));
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let op = ["<=", ">=", "==", "!=", "&&", "||"]
            .into_iter()
            .find(|o| *o == two)
            .or_else(|| {
                ["<", ">", "!", "(", ")", "[", "]", "-"]
                    .into_iter()
                    .find(|o| o.starts_with(c))
            })
            .ok_or_else(|| ConditionError {
                column: start + 1,
                message: format!("unexpected character `{c}`"),
            })?;
        i += op.len();
        out.push((start, Token::Op(op)));
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    pos: usize,
    len: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn column(&self) -> usize {
        self.tokens
            .get(self.pos)
            .map_or(self.len + 1, |(c, _)| c + 1)
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, ConditionError> {
        Err(ConditionError {
            column: self.column(),
            message: message.into(),
        })
    }

    fn eat_op(&mut self, op: &str) -> bool {
        if self.peek()
            == Some(&Token::Op(match op {
                "(" => "(",
                ")" => ")",
                "[" => "[",
                "]" => "]",
                "!" => "!",
                "&&" => "&&",
                "||" => "||",
                "-" => "-",
                _ => return false,
            }))
        {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_ident(&mut self, name: &str) -> bool {
        if matches!(self.peek(), Some(Token::Ident(i)) if i == name) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_op(&mut self, op: &str) -> Result<(), ConditionError> {
        if self.eat_op(op) {
            Ok(())
        } else {
            self.error(format!("expected `{op}`"))
        }
    }

    fn or(&mut self) -> Result<Expr, ConditionError> {
        let mut left = self.and()?;
        while self.eat_op("||") || self.eat_ident("or") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ConditionError> {
        let mut left = self.not()?;
        while self.eat_op("&&") || self.eat_ident("and") {
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, ConditionError> {
        if self.eat_op("!") || self.eat_ident("not") {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Expr, ConditionError> {
        if self.eat_op("(") {
            let e = self.or()?;
            self.expect_op(")")?;
            return Ok(e);
        }
        if self.eat_ident("true") {
            return Ok(Expr::Bool(true));
        }
        if self.eat_ident("false") {
            return Ok(Expr::Bool(false));
        }
        for (name, wrap) in [
            ("isNaN", Expr::IsNan as fn(Value) -> Expr),
            ("isInf", Expr::IsInf as fn(Value) -> Expr),
        ] {
            if self.eat_ident(name) {
                self.expect_op("(")?;
                let v = self.value()?;
                self.expect_op(")")?;
                return Ok(wrap(v));
            }
        }
        let left = self.value()?;
        let cmp = match self.peek() {
            Some(Token::Op("<")) => Cmp::Lt,
            Some(Token::Op("<=")) => Cmp::Le,
            Some(Token::Op(">")) => Cmp::Gt,
            Some(Token::Op(">=")) => Cmp::Ge,
            Some(Token::Op("==")) => Cmp::Eq,
            Some(Token::Op("!=")) => Cmp::Ne,
            _ => return self.error("expected a comparison (<, <=, >, >=, ==, !=)"),
        };
        self.pos += 1;
        let right = self.value()?;
        Ok(Expr::Compare(left, cmp, right))
    }

    fn value(&mut self) -> Result<Value, ConditionError> {
        match self.peek().cloned() {
            Some(Token::Number(n)) => {
                self.pos += 1;
                Ok(Value::Number(n))
            }
            Some(Token::Op("-")) => {
                self.pos += 1;
                match self.peek().cloned() {
                    Some(Token::Number(n)) => {
                        self.pos += 1;
                        Ok(Value::Number(-n))
                    }
                    _ => self.error("expected a number after `-`"),
                }
            }
            Some(Token::Ident(i)) if i == "result" => {
                self.pos += 1;
                if self.eat_op("[") {
                    let index = match self.peek().cloned() {
                        Some(Token::Number(n)) if n >= 0.0 && n.fract() == 0.0 && n < 1e9 => {
                            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                            let i = n as usize;
                            i
                        }
                        _ => return self.error("expected an index (0, 1, ...)"),
                    };
                    self.pos += 1;
                    self.expect_op("]")?;
                    Ok(Value::Index(index))
                } else {
                    Ok(Value::Result)
                }
            }
            Some(Token::Ident(i)) if i == "len" => {
                self.pos += 1;
                self.expect_op("(")?;
                if !self.eat_ident("result") {
                    return self.error("`len` takes `result`");
                }
                self.expect_op(")")?;
                Ok(Value::Len)
            }
            _ => self.error("expected a number, `result`, `result[i]` or `len(result)`"),
        }
    }
}

impl Condition {
    /// Parses a condition.
    pub fn parse(source: &str) -> Result<Self, ConditionError> {
        let tokens = tokenize(source)?;
        let mut p = Parser {
            tokens,
            pos: 0,
            len: source.chars().count(),
        };
        if p.peek().is_none() {
            return p.error("the condition is empty");
        }
        let expr = p.or()?;
        if p.peek().is_some() {
            return p.error("unexpected text after the condition");
        }
        Ok(Condition {
            source: source.to_owned(),
            expr,
        })
    }

    /// The condition as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Evaluates the condition; the error names an index past the end of the samples.
    pub fn evaluate(&self, input: &ConditionInput<'_>) -> Result<bool, String> {
        eval(&self.expr, input)
    }
}

fn value(v: &Value, input: &ConditionInput<'_>) -> Result<f64, String> {
    Ok(match v {
        Value::Number(n) => *n,
        Value::Result => input.value,
        Value::Index(i) => *input.values.get(*i).ok_or_else(|| {
            format!(
                "result[{i}] does not exist: the measurement has {} values",
                input.values.len()
            )
        })?,
        #[allow(clippy::cast_precision_loss)]
        Value::Len => input.values.len() as f64,
    })
}

fn eval(e: &Expr, input: &ConditionInput<'_>) -> Result<bool, String> {
    Ok(match e {
        Expr::Bool(b) => *b,
        Expr::Compare(l, op, r) => {
            let (l, r) = (value(l, input)?, value(r, input)?);
            match op {
                Cmp::Lt => l < r,
                Cmp::Le => l <= r,
                Cmp::Gt => l > r,
                Cmp::Ge => l >= r,
                Cmp::Eq => l == r,
                Cmp::Ne => l != r,
            }
        }
        Expr::IsNan(v) => value(v, input)?.is_nan(),
        Expr::IsInf(v) => value(v, input)?.is_infinite(),
        Expr::Not(e) => !eval(e, input)?,
        Expr::And(a, b) => eval(a, input)? && eval(b, input)?,
        Expr::Or(a, b) => eval(a, input)? || eval(b, input)?,
    })
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Condition::parse(&s).map_err(|e| serde::de::Error::custom(format!("condition `{s}` {e}")))
    }
}

/// The phase of one measurement from its conditions, as Argo Rollouts decides it
/// (`evaluate.go`): neither condition → pass; only success → pass if true else fail; only
/// failure → fail if true else pass; both → fail if the failure condition holds, else pass if
/// the success condition holds, else inconclusive. An evaluation error is returned as is (a
/// measurement error).
pub fn assess(
    success: Option<&Condition>,
    failure: Option<&Condition>,
    input: &ConditionInput<'_>,
) -> Result<crate::Verdict, String> {
    use crate::Verdict::{Fail, Inconclusive, Pass};
    Ok(match (success, failure) {
        (None, None) => Pass,
        (Some(s), None) => {
            if s.evaluate(input)? {
                Pass
            } else {
                Fail
            }
        }
        (None, Some(f)) => {
            if f.evaluate(input)? {
                Fail
            } else {
                Pass
            }
        }
        (Some(s), Some(f)) => {
            if f.evaluate(input)? {
                Fail
            } else if s.evaluate(input)? {
                Pass
            } else {
                Inconclusive
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Verdict;

    fn eval_str(s: &str, value: f64, values: &[f64]) -> Result<bool, String> {
        Condition::parse(s)
            .unwrap()
            .evaluate(&ConditionInput { value, values })
    }

    #[test]
    fn argo_examples() {
        assert_eq!(eval_str("result[0] < 0.01", 0.0, &[0.005]), Ok(true));
        assert_eq!(eval_str("result[0] >= 0.95", 0.0, &[0.9]), Ok(false));
        assert_eq!(eval_str("result < 0.5", 0.4, &[]), Ok(true));
        assert_eq!(
            eval_str("len(result) == 0 || isNaN(result)", f64::NAN, &[1.0]),
            Ok(true)
        );
        assert_eq!(
            eval_str("result > -1e-3 and not (result == 2)", 0.0, &[]),
            Ok(true)
        );
        assert_eq!(
            eval_str("!(result[1] != 3) && true", 0.0, &[1.0, 3.0]),
            Ok(true)
        );
        assert_eq!(
            eval_str("isInf(result[0]) or false", 0.0, &[f64::INFINITY]),
            Ok(true)
        );
        // && binds tighter than ||.
        assert_eq!(eval_str("true || false && false", 0.0, &[]), Ok(true));
        assert_eq!(eval_str("result < 1", f64::NAN, &[]), Ok(false));
        assert!(
            eval_str("result[3] > 0", 0.0, &[1.0])
                .unwrap_err()
                .contains("result[3]")
        );
    }

    #[test]
    fn parse_errors_say_where() {
        for (s, column) in [
            ("", 1),
            ("result <", 9),
            ("result < 1 extra", 12),
            ("result[x] > 1", 8),
            ("result # 1", 8),
            ("foo > 1", 1),
            ("(result > 1", 12),
            ("len(x)", 5),
            ("1.2.3 > 1", 1),
        ] {
            let e = Condition::parse(s).unwrap_err();
            assert_eq!(e.column, column, "`{s}`: {e}");
        }
    }

    #[test]
    fn argo_phase_rules() {
        let s = Condition::parse("result < 1").unwrap();
        let f = Condition::parse("result > 5").unwrap();
        let at = |v: f64| ConditionInput {
            value: v,
            values: &[],
        };
        assert_eq!(assess(None, None, &at(9.0)), Ok(Verdict::Pass));
        assert_eq!(assess(Some(&s), None, &at(3.0)), Ok(Verdict::Fail));
        assert_eq!(assess(None, Some(&f), &at(3.0)), Ok(Verdict::Pass));
        assert_eq!(
            assess(Some(&s), Some(&f), &at(3.0)),
            Ok(Verdict::Inconclusive)
        );
        assert_eq!(assess(Some(&s), Some(&f), &at(0.0)), Ok(Verdict::Pass));
        assert_eq!(assess(Some(&s), Some(&f), &at(9.0)), Ok(Verdict::Fail));
    }
}
