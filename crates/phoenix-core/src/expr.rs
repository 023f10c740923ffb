//! The scoring expression language (`attrs.kills * 10 + max(attrs.bonus, 0)`): parsed and checked once
//! when a leaderboard is created, compiled to a flat postfix program, and evaluated per event without
//! re-parsing or allocating.
//!
//! Grammar, lowest precedence first (all binary operators are left-associative):
//!
//! ```text
//! sum     := product (('+' | '-') product)*
//! product := unary (('*' | '/') unary)*
//! unary   := '-' unary | primary
//! primary := number | field | function '(' sum (',' sum)* ')' | '(' sum ')'
//! ```
//!
//! Numbers are decimal literals (`12`, `0.5`; no sign, no exponent). Fields are `attrs.<key...>` and
//! `actor.metadata.<key...>`; inside an expression a key uses `A-Z a-z 0-9 _` only, because `-` is
//! the minus operator. Functions: `abs(x)` takes exactly one argument; `min(...)` and `max(...)` take
//! 1 to 64 arguments.

use crate::field::{FieldPath, FieldSource};
use std::fmt;

/// Longest accepted source, in characters.
pub const MAX_SOURCE_CHARS: usize = 1024;
/// Deepest accepted nesting of parentheses, function calls and unary minus, so parsing cannot overflow
/// the stack.
pub const MAX_DEPTH: usize = 64;
/// Most arguments `min` / `max` accept.
pub const MAX_ARGS: usize = 64;
/// Most intermediate values evaluation holds at once; evaluation uses a fixed array of this size
/// instead of allocating.
pub const MAX_STACK: usize = 128;

/// Why an expression was rejected, at a 0-based character offset into its source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at position {position}")]
pub struct ExprError {
    pub position: usize,
    pub message: String,
}

impl ExprError {
    fn new(position: usize, message: impl Into<String>) -> Self {
        Self {
            position,
            message: message.into(),
        }
    }
}

/// One instruction of the compiled postfix program.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Const(f64),
    /// Index into `Expr::fields`.
    Field(u32),
    Neg,
    Add,
    Sub,
    Mul,
    Div,
    Abs,
    Min(u16),
    Max(u16),
}

/// A compiled scoring expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    source: String,
    ops: Vec<Op>,
    fields: Vec<FieldPath>,
}

impl Expr {
    /// Parses and compiles `src`.
    pub fn parse(src: &str) -> Result<Expr, ExprError> {
        if src.chars().count() > MAX_SOURCE_CHARS {
            return Err(ExprError::new(
                MAX_SOURCE_CHARS,
                format!("expression is longer than {MAX_SOURCE_CHARS} characters"),
            ));
        }
        let chars: Vec<char> = src.chars().collect();
        let tokens = tokenize(&chars)?;
        let mut parser = Parser {
            chars: &chars,
            tokens,
            next: 0,
            ops: Vec::new(),
            fields: Vec::new(),
            height: 0,
            depth: 0,
        };
        if parser.peek().kind == Kind::End {
            return Err(ExprError::new(0, "empty expression"));
        }
        parser.sum()?;
        let token = parser.peek();
        match token.kind {
            Kind::End => {}
            Kind::RParen => {
                return Err(ExprError::new(
                    token.start,
                    "unbalanced parentheses: ')' has no matching '('",
                ));
            }
            _ => return Err(parser.unexpected(token)),
        }
        Ok(Expr {
            source: src.to_owned(),
            ops: parser.ops,
            fields: parser.fields,
        })
    }

    /// The source text this expression was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Every field the expression reads, in order of appearance.
    pub fn fields(&self) -> &[FieldPath] {
        &self.fields
    }

    /// Evaluates against one event. `None` (the rule contributes nothing) when a field is missing or not
    /// a JSON number, on division by zero, or when any intermediate result is not finite.
    pub fn eval<S: FieldSource + ?Sized>(&self, event: &S) -> Option<f64> {
        let mut stack = [0.0f64; MAX_STACK];
        let mut len = 0usize;
        // Compilation guarantees the stack discipline; the checked accessors only keep a broken
        // invariant from panicking.
        for op in &self.ops {
            match *op {
                Op::Const(value) => {
                    *stack.get_mut(len)? = value;
                    len += 1;
                }
                Op::Field(index) => {
                    let path = self.fields.get(index as usize)?;
                    *stack.get_mut(len)? = event.field(path)?.as_f64()?;
                    len += 1;
                }
                Op::Neg | Op::Abs => {
                    let top = stack.get_mut(len.checked_sub(1)?)?;
                    *top = if matches!(op, Op::Neg) {
                        -*top
                    } else {
                        top.abs()
                    };
                }
                Op::Add | Op::Sub | Op::Mul | Op::Div => {
                    let rhs = *stack.get(len.checked_sub(1)?)?;
                    len -= 1;
                    let lhs = stack.get_mut(len.checked_sub(1)?)?;
                    let result = match op {
                        Op::Add => *lhs + rhs,
                        Op::Sub => *lhs - rhs,
                        Op::Mul => *lhs * rhs,
                        _ if rhs == 0.0 => return None,
                        _ => *lhs / rhs,
                    };
                    if !result.is_finite() {
                        return None;
                    }
                    *lhs = result;
                }
                Op::Min(argc) | Op::Max(argc) => {
                    let start = len.checked_sub(usize::from(argc))?;
                    let args = stack.get(start..len)?;
                    let (first, rest) = args.split_first()?;
                    let pick = if matches!(op, Op::Min(_)) {
                        f64::min
                    } else {
                        f64::max
                    };
                    let result = rest.iter().fold(*first, |acc, &x| pick(acc, x));
                    len = start;
                    *stack.get_mut(len)? = result;
                    len += 1;
                }
            }
        }
        match stack.get(..len)? {
            [value] if value.is_finite() => Some(*value),
            _ => None,
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl std::str::FromStr for Expr {
    type Err = ExprError;
    fn from_str(src: &str) -> Result<Self, Self::Err> {
        Expr::parse(src)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Number(f64),
    Ident,
    Plus,
    Minus,
    Star,
    Slash,
    LParen,
    RParen,
    Comma,
    End,
}

/// A token spanning `start..end` characters of the source.
#[derive(Debug, Clone, Copy)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

fn tokenize(chars: &[char]) -> Result<Vec<Token>, ExprError> {
    let mut tokens = Vec::new();
    let mut at = 0;
    while let Some(&c) = chars.get(at) {
        if c.is_whitespace() {
            at += 1;
            continue;
        }
        let start = at;
        let kind = match c {
            '+' => Kind::Plus,
            '-' => Kind::Minus,
            '*' => Kind::Star,
            '/' => Kind::Slash,
            '(' => Kind::LParen,
            ')' => Kind::RParen,
            ',' => Kind::Comma,
            _ if c.is_ascii_digit() || c.is_ascii_alphabetic() || c == '_' => {
                // Letters glued to a number are swallowed too, so `2x` reads as one bad number.
                while chars.get(at).copied().is_some_and(is_ident_char) {
                    at += 1;
                }
                let token = Token {
                    kind: Kind::Ident,
                    start,
                    end: at,
                };
                if c.is_ascii_digit() {
                    tokens.push(number(chars, token)?);
                } else {
                    tokens.push(token);
                }
                continue;
            }
            _ => {
                return Err(ExprError::new(start, format!("unexpected character '{c}'")));
            }
        };
        at += 1;
        tokens.push(Token {
            kind,
            start,
            end: at,
        });
    }
    tokens.push(Token {
        kind: Kind::End,
        start: chars.len(),
        end: chars.len(),
    });
    Ok(tokens)
}

/// Checks a `digits[.digits]` literal and turns its token into a number.
fn number(chars: &[char], token: Token) -> Result<Token, ExprError> {
    let text: String = chars
        .get(token.start..token.end)
        .unwrap_or_default()
        .iter()
        .collect();
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text.as_str(), None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || fraction.is_some_and(|f| !digits(f)) {
        return Err(ExprError::new(
            token.start,
            format!("invalid number '{text}'"),
        ));
    }
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(Token {
            kind: Kind::Number(value),
            ..token
        }),
        _ => Err(ExprError::new(
            token.start,
            format!("number '{text}' is out of range"),
        )),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Function {
    Min,
    Max,
    Abs,
}

struct Parser<'a> {
    chars: &'a [char],
    tokens: Vec<Token>,
    next: usize,
    ops: Vec<Op>,
    fields: Vec<FieldPath>,
    /// Values on the evaluation stack after the ops emitted so far.
    height: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Token {
        // The token list always ends with `End`, and `advance` never moves past it.
        self.tokens
            .get(self.next)
            .or_else(|| self.tokens.last())
            .copied()
            .unwrap_or(Token {
                kind: Kind::End,
                start: self.chars.len(),
                end: self.chars.len(),
            })
    }

    fn advance(&mut self) -> Token {
        let token = self.peek();
        if token.kind != Kind::End {
            self.next += 1;
        }
        token
    }

    fn text(&self, token: Token) -> String {
        self.chars
            .get(token.start..token.end)
            .unwrap_or_default()
            .iter()
            .collect()
    }

    fn unexpected(&self, token: Token) -> ExprError {
        match token.kind {
            Kind::End => ExprError::new(token.start, "unexpected end of expression"),
            _ => ExprError::new(token.start, format!("unexpected '{}'", self.text(token))),
        }
    }

    fn emit(&mut self, op: Op, position: usize) -> Result<(), ExprError> {
        match op {
            Op::Const(_) | Op::Field(_) => self.height += 1,
            Op::Add | Op::Sub | Op::Mul | Op::Div => self.height -= 1,
            Op::Min(argc) | Op::Max(argc) => self.height -= usize::from(argc) - 1,
            Op::Neg | Op::Abs => {}
        }
        if self.height > MAX_STACK {
            return Err(ExprError::new(
                position,
                format!("expression is too complex: it holds more than {MAX_STACK} values at once"),
            ));
        }
        self.ops.push(op);
        Ok(())
    }

    fn enter(&mut self, position: usize) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ExprError::new(
                position,
                format!("expression nests more than {MAX_DEPTH} levels deep"),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn sum(&mut self) -> Result<(), ExprError> {
        self.product()?;
        loop {
            let token = self.peek();
            let op = match token.kind {
                Kind::Plus => Op::Add,
                Kind::Minus => Op::Sub,
                _ => return Ok(()),
            };
            self.advance();
            self.product()?;
            self.emit(op, token.start)?;
        }
    }

    fn product(&mut self) -> Result<(), ExprError> {
        self.unary()?;
        loop {
            let token = self.peek();
            let op = match token.kind {
                Kind::Star => Op::Mul,
                Kind::Slash => Op::Div,
                _ => return Ok(()),
            };
            self.advance();
            self.unary()?;
            self.emit(op, token.start)?;
        }
    }

    fn unary(&mut self) -> Result<(), ExprError> {
        let token = self.peek();
        if token.kind != Kind::Minus {
            return self.primary();
        }
        self.advance();
        self.enter(token.start)?;
        self.unary()?;
        self.leave();
        self.emit(Op::Neg, token.start)
    }

    fn primary(&mut self) -> Result<(), ExprError> {
        let token = self.advance();
        match token.kind {
            Kind::Number(value) => self.emit(Op::Const(value), token.start),
            Kind::Ident if self.peek().kind == Kind::LParen => self.call(token),
            Kind::Ident => self.field(token),
            Kind::LParen => {
                self.enter(token.start)?;
                self.sum()?;
                self.close(token)?;
                self.leave();
                Ok(())
            }
            _ => Err(self.unexpected(token)),
        }
    }

    /// Consumes the `)` matching `open`.
    fn close(&mut self, open: Token) -> Result<(), ExprError> {
        let token = self.advance();
        match token.kind {
            Kind::RParen => Ok(()),
            Kind::End => Err(ExprError::new(
                open.start,
                "unbalanced parentheses: '(' is never closed",
            )),
            _ => Err(self.unexpected(token)),
        }
    }

    fn call(&mut self, name: Token) -> Result<(), ExprError> {
        let text = self.text(name);
        let function = match text.as_str() {
            "min" => Function::Min,
            "max" => Function::Max,
            "abs" => Function::Abs,
            _ => {
                return Err(ExprError::new(
                    name.start,
                    format!("unknown function '{text}'"),
                ));
            }
        };
        let open = self.advance();
        self.enter(name.start)?;
        let mut argc = 0usize;
        if self.peek().kind == Kind::RParen {
            self.advance();
        } else {
            loop {
                self.sum()?;
                argc += 1;
                let token = self.peek();
                match token.kind {
                    Kind::Comma => {
                        self.advance();
                    }
                    _ => {
                        self.close(open)?;
                        break;
                    }
                }
            }
        }
        self.leave();
        let op = match function {
            Function::Abs if argc != 1 => {
                return Err(ExprError::new(
                    name.start,
                    format!("'abs' takes exactly 1 argument, got {argc}"),
                ));
            }
            Function::Abs => Op::Abs,
            Function::Min | Function::Max if !(1..=MAX_ARGS).contains(&argc) => {
                return Err(ExprError::new(
                    name.start,
                    format!("'{text}' takes 1 to {MAX_ARGS} arguments, got {argc}"),
                ));
            }
            // `argc` fits: it was just checked against MAX_ARGS.
            Function::Min => Op::Min(argc as u16),
            Function::Max => Op::Max(argc as u16),
        };
        self.emit(op, name.start)
    }

    fn field(&mut self, token: Token) -> Result<(), ExprError> {
        let text = self.text(token);
        if matches!(text.as_str(), "min" | "max" | "abs") {
            return Err(ExprError::new(
                token.end,
                format!("expected '(' after '{text}'"),
            ));
        }
        let readable = text == "attrs"
            || text == "actor.metadata"
            || text.starts_with("attrs.")
            || text.starts_with("actor.metadata.");
        if !readable {
            return Err(ExprError::new(
                token.start,
                format!("unknown field '{text}'"),
            ));
        }
        let path = FieldPath::parse(&text).map_err(|msg| ExprError::new(token.start, msg))?;
        let index = u32::try_from(self.fields.len())
            .map_err(|_| ExprError::new(token.start, "too many fields"))?;
        self.fields.push(path);
        self.emit(Op::Field(index), token.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn eval(src: &str) -> Option<f64> {
        eval_on(src, &json!({}))
    }

    fn eval_on(src: &str, event: &Value) -> Option<f64> {
        Expr::parse(src)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
            .eval(event)
    }

    fn err(src: &str) -> String {
        Expr::parse(src).unwrap_err().to_string()
    }

    #[test]
    fn arithmetic_follows_precedence_and_associativity() {
        assert_eq!(eval("1 + 2 * 3"), Some(7.0));
        assert_eq!(eval("(1 + 2) * 3"), Some(9.0));
        assert_eq!(eval("10 - 4 - 3"), Some(3.0));
        assert_eq!(eval("10 - (4 - 3)"), Some(9.0));
        assert_eq!(eval("16 / 4 / 2"), Some(2.0));
        assert_eq!(eval("2 * 3 + 4 * 5"), Some(26.0));
        assert_eq!(eval("7 / 2"), Some(3.5));
        assert_eq!(eval("0.25 + 1.5"), Some(1.75));
        assert_eq!(eval("42"), Some(42.0));
        assert_eq!(eval("  ((((3))))  "), Some(3.0));
    }

    #[test]
    fn unary_minus_binds_tighter_than_binary_operators() {
        assert_eq!(eval("-3"), Some(-3.0));
        assert_eq!(eval("--3"), Some(3.0));
        assert_eq!(eval("-2 * 3"), Some(-6.0));
        assert_eq!(eval("2 * -3"), Some(-6.0));
        assert_eq!(eval("5 - -2"), Some(7.0));
        assert_eq!(eval("-(1 + 2)"), Some(-3.0));
    }

    #[test]
    fn functions_nest() {
        assert_eq!(eval("min(3, 1, 2)"), Some(1.0));
        assert_eq!(eval("max(3, 1, 2)"), Some(3.0));
        assert_eq!(eval("max(7)"), Some(7.0));
        assert_eq!(eval("abs(-4.5)"), Some(4.5));
        assert_eq!(
            eval("max(min(10, 20), abs(-30) / 2, 1 + 2 * 3)"),
            Some(15.0)
        );
        assert_eq!(eval("abs(min(-1, max(-5, -2)))"), Some(2.0));
        assert_eq!(eval("2 * max ( 1 , 2 )"), Some(4.0));
    }

    #[test]
    fn fields_read_numbers_from_the_event() {
        let event = json!({
            "actor": {"user_id": "u", "metadata": {"level": 3, "guild": {"bonus": 1.5}}},
            "attrs": {"score": 100, "kills": 4, "name": "x", "flag": true, "zero": 0}
        });
        assert_eq!(eval_on("attrs.score", &event), Some(100.0));
        assert_eq!(
            eval_on("attrs.score + attrs.kills * 10", &event),
            Some(140.0)
        );
        assert_eq!(
            eval_on("actor.metadata.level * actor.metadata.guild.bonus", &event),
            Some(4.5)
        );
        assert_eq!(eval_on("attrs.missing + 1", &event), None);
        assert_eq!(eval_on("max(attrs.missing, 1)", &event), None);
        assert_eq!(eval_on("attrs.name", &event), None);
        assert_eq!(eval_on("attrs.flag * 1", &event), None);
        assert_eq!(eval_on("attrs.score / attrs.zero", &event), None);
        let expr = Expr::parse("attrs.a + actor.metadata.b").unwrap();
        assert_eq!(
            expr.fields(),
            &[
                FieldPath::Attrs(vec!["a".into()]),
                FieldPath::ActorMetadata(vec!["b".into()])
            ]
        );
    }

    #[test]
    fn division_by_zero_and_overflow_contribute_nothing() {
        assert_eq!(eval("1 / 0"), None);
        assert_eq!(eval("1 / (2 - 2)"), None);
        assert_eq!(eval("0 / 0"), None);
        assert_eq!(eval("1 / -0"), None);
        let big = format!("1{}", "0".repeat(300));
        assert_eq!(eval(&format!("{big} * {big}")), None);
        assert_eq!(eval(&format!("-{big} * {big} + 1")), None);
    }

    #[test]
    fn errors_name_what_went_wrong_and_where() {
        assert_eq!(err("1 + sqrt(2)"), "unknown function 'sqrt' at position 4");
        assert_eq!(Expr::parse("1 + sqrt(2)").unwrap_err().position, 4);
        assert_eq!(err(""), "empty expression at position 0");
        assert_eq!(err("   "), "empty expression at position 0");
        assert_eq!(err("1 +"), "unexpected end of expression at position 3");
        assert_eq!(err("1 2"), "unexpected '2' at position 2");
        assert_eq!(err("* 2"), "unexpected '*' at position 0");
        assert_eq!(err("()"), "unexpected ')' at position 1");
        assert_eq!(
            err("(1 + 2"),
            "unbalanced parentheses: '(' is never closed at position 0"
        );
        assert_eq!(
            err("1 + 2)"),
            "unbalanced parentheses: ')' has no matching '(' at position 5"
        );
        assert_eq!(
            err("max(1, 2"),
            "unbalanced parentheses: '(' is never closed at position 3"
        );
        assert_eq!(err("max(1 2)"), "unexpected '2' at position 6");
        assert_eq!(err("max(1,)"), "unexpected ')' at position 6");
        assert_eq!(
            err("abs(1, 2)"),
            "'abs' takes exactly 1 argument, got 2 at position 0"
        );
        assert_eq!(
            err("abs()"),
            "'abs' takes exactly 1 argument, got 0 at position 0"
        );
        assert_eq!(
            err("2 * min()"),
            "'min' takes 1 to 64 arguments, got 0 at position 4"
        );
        assert_eq!(err("max + 1"), "expected '(' after 'max' at position 3");
        assert_eq!(err("1.2.3"), "invalid number '1.2.3' at position 0");
        assert_eq!(err("1 + 2x"), "invalid number '2x' at position 4");
        assert_eq!(err("1."), "invalid number '1.' at position 0");
        assert_eq!(err(".5"), "unexpected character '.' at position 0");
        assert_eq!(err("2 ^ 3"), "unexpected character '^' at position 2");
        assert_eq!(err("é + 1"), "unexpected character 'é' at position 0");
        assert_eq!(err("é + $"), "unexpected character 'é' at position 0");
        assert_eq!(err("1 + é$"), "unexpected character 'é' at position 4");
        assert_eq!(err("2 * score"), "unknown field 'score' at position 4");
        assert!(err("type").starts_with("unknown field 'type'"));
        assert!(err("actor.user_id + 1").starts_with("unknown field 'actor.user_id'"));
        assert_eq!(
            err("1 + attrs..x"),
            "field path 'attrs..x' has an empty key at position 4"
        );
        assert_eq!(
            err("attrs"),
            "field path 'attrs' needs a key, e.g. 'attrs.score' at position 0"
        );
        assert_eq!(
            err("attrs.x(1)"),
            "unknown function 'attrs.x' at position 0"
        );
    }

    #[test]
    fn input_size_and_nesting_are_bounded() {
        let long = "1+".repeat(600) + "1";
        assert_eq!(
            err(&long),
            "expression is longer than 1024 characters at position 1024"
        );
        let deep = format!("{}1{}", "(".repeat(65), ")".repeat(65));
        assert_eq!(
            err(&deep),
            "expression nests more than 64 levels deep at position 64"
        );
        let ok = format!("{}1{}", "(".repeat(64), ")".repeat(64));
        assert_eq!(eval(&ok), Some(1.0));
        assert!(err(&"-".repeat(100)).contains("nests more than 64"));
        assert!(err(&"abs(".repeat(100)).contains("nests more than 64"));
        assert!(err(&"(".repeat(100_000)).contains("longer than 1024"));
        let many = format!("max({})", vec!["1"; 65].join(","));
        assert_eq!(
            err(&many),
            "'max' takes 1 to 64 arguments, got 65 at position 0"
        );
        // Pending values pile up across nested calls; the fixed evaluation stack refuses the surplus.
        let args = vec!["1"; 60].join(",");
        let wide = format!("max({args},max({args},max({args},1)))");
        assert!(err(&wide).contains("too complex"), "{}", err(&wide));
    }

    #[test]
    fn source_is_kept_verbatim() {
        let expr = Expr::parse(" attrs.score *2 ").unwrap();
        assert_eq!(expr.source(), " attrs.score *2 ");
        assert_eq!(expr.to_string(), " attrs.score *2 ");
        assert_eq!(expr.clone(), expr);
    }
}
