//! WQL ([MS-WMI] 2.2.1): data queries `SELECT props FROM class [WHERE
//! expr]`, parsed into a [`Query`] with the column of every error. The
//! grammar of the WHERE clause: comparisons `=`, `!=`, `<>`, `<`, `>`,
//! `<=`, `>=`, `LIKE` between a property and a typed constant (either
//! side), `IS [NOT] NULL`, `ISA 'class'` (on `__THIS`, `__CLASS` or an
//! embedded-object property), `AND`, `OR`, `NOT`, parentheses. Keywords
//! and names ignore case; string constants take '…' or "…".

use std::fmt;

use crate::error::{Result, WbemStatus, WmiError};

/// A typed constant.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    String(String),
    Int(i64),
    Real(f64),
    Bool(bool),
    Null,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    Like,
}

impl Op {
    /// The operator seen from the other side (`5 < X` is `X > 5`).
    fn flipped(self) -> Op {
        match self {
            Op::Lt => Op::Gt,
            Op::Gt => Op::Lt,
            Op::Le => Op::Ge,
            Op::Ge => Op::Le,
            other => other,
        }
    }

    fn text(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "<>",
            Op::Lt => "<",
            Op::Gt => ">",
            Op::Le => "<=",
            Op::Ge => ">=",
            Op::Like => "LIKE",
        }
    }
}

/// A property named in a query, with its column for error messages.
#[derive(Clone, Debug)]
pub struct Name {
    pub text: String,
    pub position: usize,
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.text.eq_ignore_ascii_case(&other.text)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Compare {
        property: Name,
        op: Op,
        value: Literal,
    },
    IsNull {
        property: Name,
        negated: bool,
    },
    /// `property ISA 'Class'`; `__THIS ISA` tests the instance's class.
    Isa {
        property: Name,
        class: Name,
    },
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

/// A data query.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    /// `None` for `*`.
    pub properties: Option<Vec<Name>>,
    pub class: Name,
    /// `WITHIN n` (seconds), for event queries.
    pub within: Option<f64>,
    pub filter: Option<Expr>,
}

/// `ASSOCIATORS OF {path}` or `REFERENCES OF {path}` with its WHERE
/// keywords ([MS-WMI] 2.2.1.1).
#[derive(Clone, Debug, Default)]
pub struct AssocQuery {
    /// REFERENCES OF (the associations themselves) rather than
    /// ASSOCIATORS OF (the instances at their other ends).
    pub references: bool,
    /// The object path between the braces, as written.
    pub path: String,
    /// Its column, for errors about it.
    pub path_position: usize,
    pub result_class: Option<Name>,
    pub assoc_class: Option<Name>,
    pub role: Option<Name>,
    pub result_role: Option<Name>,
    pub required_qualifier: Option<Name>,
    pub required_assoc_qualifier: Option<Name>,
    pub class_defs_only: bool,
    pub keys_only: bool,
}

/// Equal when they ask the same thing (where it was written aside).
impl PartialEq for AssocQuery {
    fn eq(&self, o: &AssocQuery) -> bool {
        self.references == o.references
            && self.path == o.path
            && self.result_class == o.result_class
            && self.assoc_class == o.assoc_class
            && self.role == o.role
            && self.result_role == o.result_role
            && self.required_qualifier == o.required_qualifier
            && self.required_assoc_qualifier == o.required_assoc_qualifier
            && self.class_defs_only == o.class_defs_only
            && self.keys_only == o.keys_only
    }
}

/// Any WQL data statement.
#[derive(Clone, Debug, PartialEq)]
pub enum Statement {
    Select(Query),
    Assoc(AssocQuery),
}

// ----- lexing ---------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(Literal),
    Sym(&'static str),
    End,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    /// 1-based character column.
    pos: usize,
}

fn invalid(pos: usize, message: impl Into<String>) -> WmiError {
    WmiError::at(WbemStatus::InvalidQuery, pos, message)
}

/// The longest query accepted; WMI's own limit is of the same order.
pub const MAX_QUERY_CHARS: usize = 16 * 1024;

fn lex(text: &str) -> Result<Vec<Token>> {
    lex_at(text, 0)
}

/// Lexes `text`, whose first character is at column `offset + 1`.
fn lex_at(text: &str, offset: usize) -> Result<Vec<Token>> {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() > MAX_QUERY_CHARS {
        return Err(invalid(
            MAX_QUERY_CHARS + 1,
            format!("a query is at most {MAX_QUERY_CHARS} characters"),
        ));
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let pos = offset + i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Word(chars[start..i].iter().collect()),
                pos,
            });
            continue;
        }
        if c.is_ascii_digit()
            || ((c == '-' || c == '+' || c == '.')
                && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let literal = if text.contains('.') {
                text.parse::<f64>().ok().map(Literal::Real)
            } else {
                text.parse::<i64>().ok().map(Literal::Int)
            };
            let literal =
                literal.ok_or_else(|| invalid(pos, format!("'{text}' is not a number")))?;
            out.push(Token {
                tok: Tok::Num(literal),
                pos,
            });
            continue;
        }
        if c == '\'' || c == '"' {
            let mut value = String::new();
            i += 1;
            let mut closed = false;
            while i < chars.len() {
                let d = chars[i];
                i += 1;
                if d == '\\' && i < chars.len() {
                    value.push(chars[i]);
                    i += 1;
                } else if d == c {
                    closed = true;
                    break;
                } else {
                    value.push(d);
                }
            }
            if !closed {
                return Err(invalid(pos, "the string is not closed"));
            }
            out.push(Token {
                tok: Tok::Str(value),
                pos,
            });
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let sym = match two.as_str() {
            "<=" => Some("<="),
            ">=" => Some(">="),
            "<>" => Some("<>"),
            "!=" => Some("!="),
            _ => None,
        };
        if let Some(s) = sym {
            out.push(Token {
                tok: Tok::Sym(s),
                pos,
            });
            i += 2;
            continue;
        }
        let sym = match c {
            '=' => "=",
            '<' => "<",
            '>' => ">",
            '(' => "(",
            ')' => ")",
            ',' => ",",
            '*' => "*",
            '{' => "{",
            '}' => "}",
            '.' => ".",
            _ => return Err(invalid(pos, format!("unexpected character '{c}'"))),
        };
        out.push(Token {
            tok: Tok::Sym(sym),
            pos,
        });
        i += 1;
    }
    out.push(Token {
        tok: Tok::End,
        pos: offset + chars.len() + 1,
    });
    Ok(out)
}

// ----- parsing --------------------------------------------------------

/// Nesting deeper than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 64;

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.at.min(self.tokens.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if self.at < self.tokens.len() - 1 {
            self.at += 1;
        }
        t
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(&self.peek().tok, Tok::Word(w) if w.eq_ignore_ascii_case(word))
    }

    fn expect_word(&mut self, word: &str) -> Result<()> {
        if self.is_word(word) {
            self.next();
            Ok(())
        } else {
            Err(self.unexpected(&format!("expected {word}")))
        }
    }

    fn unexpected(&self, expected: &str) -> WmiError {
        let t = self.peek();
        let found = match &t.tok {
            Tok::Word(w) => format!("'{w}'"),
            Tok::Str(s) => format!("the string '{s}'"),
            Tok::Num(_) => "a number".to_string(),
            Tok::Sym(s) => format!("'{s}'"),
            Tok::End => "the end of the query".to_string(),
        };
        invalid(t.pos, format!("{expected}, found {found}"))
    }

    fn name(&mut self, what: &str) -> Result<Name> {
        let t = self.peek().clone();
        match t.tok {
            Tok::Word(w) if !is_reserved(&w) => {
                self.next();
                Ok(Name {
                    text: w,
                    position: t.pos,
                })
            }
            _ => Err(self.unexpected(&format!("expected {what}"))),
        }
    }

    /// A property, or a property of an embedded object
    /// (`TargetInstance.ServerComment`).
    fn property_name(&mut self, what: &str) -> Result<Name> {
        let mut name = self.name(what)?;
        while self.peek().tok == Tok::Sym(".") {
            self.next();
            let part = self.name("a property name after '.'")?;
            name.text.push('.');
            name.text.push_str(&part.text);
        }
        Ok(name)
    }

    fn query(&mut self) -> Result<Query> {
        if !self.is_word("SELECT") {
            let t = self.peek();
            if matches!(&t.tok, Tok::Word(w) if w.eq_ignore_ascii_case("ASSOCIATORS") || w.eq_ignore_ascii_case("REFERENCES"))
            {
                return Err(WmiError::at(
                    WbemStatus::NotSupported,
                    t.pos,
                    "ASSOCIATORS OF and REFERENCES OF queries are not supported yet",
                ));
            }
            return Err(self.unexpected("expected SELECT"));
        }
        self.next();
        let properties = if self.peek().tok == Tok::Sym("*") {
            self.next();
            None
        } else {
            let mut list = vec![self.name("a property name or *")?];
            while self.peek().tok == Tok::Sym(",") {
                self.next();
                list.push(self.name("a property name")?);
            }
            Some(list)
        };
        self.expect_word("FROM")?;
        let class = self.name("a class name")?;
        let within = if self.is_word("WITHIN") {
            self.next();
            let t = self.peek().clone();
            let seconds = match t.tok {
                Tok::Num(Literal::Int(n)) if n > 0 => n as f64,
                Tok::Num(Literal::Real(r)) if r > 0.0 && r.is_finite() => r,
                _ => return Err(self.unexpected("expected a number of seconds after WITHIN")),
            };
            self.next();
            Some(seconds)
        } else {
            None
        };
        let filter = if self.is_word("WHERE") {
            self.next();
            Some(self.or()?)
        } else {
            None
        };
        if self.peek().tok != Tok::End {
            return Err(self.unexpected("expected WHERE or the end of the query"));
        }
        Ok(Query {
            properties,
            class,
            within,
            filter,
        })
    }

    fn or(&mut self) -> Result<Expr> {
        let mut left = self.and()?;
        while self.is_word("OR") {
            self.next();
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr> {
        let mut left = self.unary()?;
        while self.is_word("AND") {
            self.next();
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(invalid(
                self.peek().pos,
                "the expression is nested too deeply",
            ));
        }
        let result = if self.is_word("NOT") {
            self.next();
            self.unary().map(|e| Expr::Not(Box::new(e)))
        } else if self.peek().tok == Tok::Sym("(") {
            self.next();
            let inner = self.or()?;
            if self.peek().tok != Tok::Sym(")") {
                return Err(self.unexpected("expected ')'"));
            }
            self.next();
            Ok(inner)
        } else {
            self.comparison()
        };
        self.depth -= 1;
        result
    }

    fn literal(&mut self) -> Option<Literal> {
        let lit = match &self.peek().tok {
            Tok::Str(s) => Literal::String(s.clone()),
            Tok::Num(n) => n.clone(),
            Tok::Word(w) if w.eq_ignore_ascii_case("TRUE") => Literal::Bool(true),
            Tok::Word(w) if w.eq_ignore_ascii_case("FALSE") => Literal::Bool(false),
            Tok::Word(w) if w.eq_ignore_ascii_case("NULL") => Literal::Null,
            _ => return None,
        };
        self.next();
        Some(lit)
    }

    fn operator(&mut self) -> Result<Op> {
        let op = match &self.peek().tok {
            Tok::Sym("=") => Op::Eq,
            Tok::Sym("!=") | Tok::Sym("<>") => Op::Ne,
            Tok::Sym("<") => Op::Lt,
            Tok::Sym(">") => Op::Gt,
            Tok::Sym("<=") => Op::Le,
            Tok::Sym(">=") => Op::Ge,
            Tok::Word(w) if w.eq_ignore_ascii_case("LIKE") => Op::Like,
            _ => {
                return Err(self
                    .unexpected("expected an operator (=, !=, <>, <, >, <=, >=, LIKE, IS, ISA)"))
            }
        };
        self.next();
        Ok(op)
    }

    fn comparison(&mut self) -> Result<Expr> {
        // A constant first: `5 < MaxConnections`.
        let literal_pos = self.peek().pos;
        if let Some(value) = self.literal() {
            let op = self.operator()?;
            if op == Op::Like {
                return Err(invalid(literal_pos, "LIKE takes the property on its left"));
            }
            let property = self.property_name("a property name")?;
            if value == Literal::Null {
                return Err(invalid(
                    literal_pos,
                    "NULL is tested with IS NULL or IS NOT NULL",
                ));
            }
            return Ok(Expr::Compare {
                property,
                op: op.flipped(),
                value,
            });
        }
        let property = self.property_name("a property name, NOT or '('")?;
        if self.is_word("IS") {
            self.next();
            let negated = if self.is_word("NOT") {
                self.next();
                true
            } else {
                false
            };
            self.expect_word("NULL")?;
            return Ok(Expr::IsNull { property, negated });
        }
        if self.is_word("ISA") {
            self.next();
            let t = self.peek().clone();
            let class = match t.tok {
                Tok::Str(s) => s,
                Tok::Word(w) if !is_reserved(&w) => w,
                _ => return Err(self.unexpected("expected a class name after ISA")),
            };
            self.next();
            return Ok(Expr::Isa {
                property,
                class: Name {
                    text: class,
                    position: t.pos,
                },
            });
        }
        let op = self.operator()?;
        let value_pos = self.peek().pos;
        let Some(value) = self.literal() else {
            return Err(self.unexpected("expected a constant (a string, a number, TRUE, FALSE)"));
        };
        if value == Literal::Null {
            return Err(invalid(
                value_pos,
                "NULL is tested with IS NULL or IS NOT NULL",
            ));
        }
        if op == Op::Like && !matches!(value, Literal::String(_)) {
            return Err(invalid(value_pos, "LIKE takes a string pattern"));
        }
        Ok(Expr::Compare {
            property,
            op,
            value,
        })
    }
}

fn is_reserved(word: &str) -> bool {
    [
        "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IS", "ISA", "LIKE", "NULL", "TRUE",
        "FALSE", "WITHIN",
    ]
    .iter()
    .any(|r| r.eq_ignore_ascii_case(word))
}

/// Parses any statement: SELECT, ASSOCIATORS OF, REFERENCES OF.
pub fn parse_statement(text: &str) -> Result<Statement> {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() > MAX_QUERY_CHARS {
        return Err(invalid(
            MAX_QUERY_CHARS + 1,
            format!("a query is at most {MAX_QUERY_CHARS} characters"),
        ));
    }
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    let word = |i: &mut usize| -> String {
        let start = *i;
        while *i < chars.len() && (chars[*i].is_ascii_alphanumeric() || chars[*i] == '_') {
            *i += 1;
        }
        chars[start..*i].iter().collect()
    };
    skip_ws(&mut i);
    let first = word(&mut i);
    let references = if first.eq_ignore_ascii_case("REFERENCES") {
        true
    } else if first.eq_ignore_ascii_case("ASSOCIATORS") {
        false
    } else {
        return parse(text).map(Statement::Select);
    };
    skip_ws(&mut i);
    let of_pos = i + 1;
    if !word(&mut i).eq_ignore_ascii_case("OF") {
        return Err(invalid(of_pos, "expected OF"));
    }
    skip_ws(&mut i);
    if chars.get(i) != Some(&'{') {
        return Err(invalid(i + 1, "expected '{' and an object path"));
    }
    let open = i;
    i += 1;
    // The path ends at the first '}' outside quotes.
    let mut quote: Option<char> = None;
    let mut escaped = false;
    while i < chars.len() {
        let c = chars[i];
        match quote {
            Some(_) if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '}' => break,
            None => {}
        }
        i += 1;
    }
    if i >= chars.len() {
        return Err(invalid(open + 1, "the object path's '{' is not closed"));
    }
    let raw: String = chars[open + 1..i].iter().collect();
    let path = raw.trim().to_string();
    if path.is_empty() {
        return Err(invalid(open + 1, "the braces hold no object path"));
    }
    let path_position = open + 2 + (raw.len() - raw.trim_start().len());
    let rest: String = chars[i + 1..].iter().collect();
    let tokens = lex_at(&rest, i + 1)?;
    let mut parser = Parser {
        tokens,
        at: 0,
        depth: 0,
    };
    let mut q = AssocQuery {
        references,
        path,
        path_position,
        ..AssocQuery::default()
    };
    if parser.is_word("WHERE") {
        parser.next();
        if parser.peek().tok == Tok::End {
            return Err(parser.unexpected("expected a keyword (ResultClass, AssocClass, Role, ResultRole, KeysOnly, ClassDefsOnly, …)"));
        }
        while parser.peek().tok != Tok::End {
            let t = parser.next();
            let Tok::Word(keyword) = t.tok else {
                parser.at -= 1;
                return Err(parser.unexpected("expected a keyword"));
            };
            let k = keyword.to_ascii_lowercase();
            let allowed_here = !references
                || matches!(
                    k.as_str(),
                    "resultclass" | "role" | "requiredqualifier" | "classdefsonly" | "keysonly"
                );
            let repeated = |set: bool| {
                if set {
                    Err(invalid(t.pos, format!("{keyword} is given twice")))
                } else {
                    Ok(())
                }
            };
            if matches!(k.as_str(), "classdefsonly" | "keysonly") {
                if !allowed_here {
                    return Err(invalid(
                        t.pos,
                        format!("{keyword} is not a REFERENCES OF keyword"),
                    ));
                }
                let flag = if k == "keysonly" {
                    &mut q.keys_only
                } else {
                    &mut q.class_defs_only
                };
                repeated(*flag)?;
                *flag = true;
                continue;
            }
            let slot = match k.as_str() {
                "resultclass" => &mut q.result_class,
                "assocclass" => &mut q.assoc_class,
                "role" => &mut q.role,
                "resultrole" => &mut q.result_role,
                "requiredqualifier" => &mut q.required_qualifier,
                "requiredassocqualifier" => &mut q.required_assoc_qualifier,
                _ => {
                    return Err(invalid(
                        t.pos,
                        format!("'{keyword}' is not an ASSOCIATORS OF or REFERENCES OF keyword"),
                    ))
                }
            };
            if !allowed_here {
                return Err(invalid(
                    t.pos,
                    format!("{keyword} is not a REFERENCES OF keyword"),
                ));
            }
            repeated(slot.is_some())?;
            if parser.peek().tok != Tok::Sym("=") {
                return Err(parser.unexpected(&format!("expected '=' after {keyword}")));
            }
            parser.next();
            let v = parser.peek().clone();
            let value = match v.tok {
                Tok::Word(w) => w,
                Tok::Str(s) if !s.is_empty() => s,
                _ => {
                    return Err(parser.unexpected(&format!("expected a name after {keyword} =")));
                }
            };
            parser.next();
            *slot = Some(Name {
                text: value,
                position: v.pos,
            });
        }
    } else if parser.peek().tok != Tok::End {
        return Err(parser.unexpected("expected WHERE or the end of the query"));
    }
    if q.keys_only && q.class_defs_only {
        return Err(invalid(
            path_position,
            "KeysOnly and ClassDefsOnly exclude each other",
        ));
    }
    Ok(Statement::Assoc(q))
}

/// Parses a SELECT query.
pub fn parse(text: &str) -> Result<Query> {
    let tokens = lex(text)?;
    Parser {
        tokens,
        at: 0,
        depth: 0,
    }
    .query()
}

// ----- printing (the canonical text, which parses back the same) -------

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::String(s) => f.write_str(&quote(s)),
            Literal::Int(n) => write!(f, "{n}"),
            Literal::Real(r) if r.fract() == 0.0 && r.is_finite() => write!(f, "{r:.1}"),
            Literal::Real(r) => write!(f, "{r}"),
            Literal::Bool(true) => f.write_str("TRUE"),
            Literal::Bool(false) => f.write_str("FALSE"),
            Literal::Null => f.write_str("NULL"),
        }
    }
}

impl Expr {
    /// Binding strength: OR 1, AND 2, everything else 3.
    fn precedence(&self) -> u8 {
        match self {
            Expr::Or(..) => 1,
            Expr::And(..) => 2,
            _ => 3,
        }
    }

    /// Prints `self` as an operand that needs at least `min` precedence,
    /// in parentheses only when it binds more loosely.
    fn operand(&self, f: &mut fmt::Formatter<'_>, min: u8) -> fmt::Result {
        if self.precedence() < min {
            write!(f, "({self})")
        } else {
            write!(f, "{self}")
        }
    }
}

/// The canonical text: parentheses only where the tree needs them (AND
/// and OR group to the left), so printing adds no nesting.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Compare {
                property,
                op,
                value,
            } => write!(f, "{} {} {value}", property.text, op.text()),
            Expr::IsNull { property, negated } => write!(
                f,
                "{} IS {}NULL",
                property.text,
                if *negated { "NOT " } else { "" }
            ),
            Expr::Isa { property, class } => {
                write!(f, "{} ISA {}", property.text, quote(&class.text))
            }
            Expr::Not(e) => {
                f.write_str("NOT ")?;
                e.operand(f, 3)
            }
            Expr::And(a, b) => {
                a.operand(f, 2)?;
                f.write_str(" AND ")?;
                b.operand(f, 3)
            }
            Expr::Or(a, b) => {
                a.operand(f, 1)?;
                f.write_str(" OR ")?;
                b.operand(f, 2)
            }
        }
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SELECT ")?;
        match &self.properties {
            None => f.write_str("*")?,
            Some(list) => {
                let names: Vec<&str> = list.iter().map(|n| n.text.as_str()).collect();
                f.write_str(&names.join(", "))?;
            }
        }
        write!(f, " FROM {}", self.class.text)?;
        if let Some(w) = self.within {
            write!(f, " WITHIN {}", Literal::Real(w))?;
        }
        if let Some(e) = &self.filter {
            write!(f, " WHERE {e}")?;
        }
        Ok(())
    }
}

impl fmt::Display for AssocQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.references {
            "REFERENCES"
        } else {
            "ASSOCIATORS"
        };
        write!(f, "{verb} OF {{{}}}", self.path)?;
        let named = [
            ("ResultClass", &self.result_class),
            ("AssocClass", &self.assoc_class),
            ("Role", &self.role),
            ("ResultRole", &self.result_role),
            ("RequiredQualifier", &self.required_qualifier),
            ("RequiredAssocQualifier", &self.required_assoc_qualifier),
        ];
        let mut parts: Vec<String> = named
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|n| format!("{k} = {}", quote(&n.text))))
            .collect();
        if self.class_defs_only {
            parts.push("ClassDefsOnly".into());
        }
        if self.keys_only {
            parts.push("KeysOnly".into());
        }
        if !parts.is_empty() {
            write!(f, " WHERE {}", parts.join(" "))?;
        }
        Ok(())
    }
}

impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Statement::Select(q) => write!(f, "{q}"),
            Statement::Assoc(q) => write!(f, "{q}"),
        }
    }
}

// ----- LIKE -------------------------------------------------------------

/// WQL's LIKE ([MS-WMI] 2.2.1.1): `%` any run, `_` any one character,
/// `[a-f]`, `[a=f]`, `[^…]` sets; case-insensitive.
pub fn like(value: &str, pattern: &str) -> bool {
    let v: Vec<char> = value.chars().flat_map(char::to_lowercase).collect();
    let p: Vec<char> = pattern.chars().flat_map(char::to_lowercase).collect();
    // Iterative matching with backtracking to the last %: linear in
    // practice, never exponential.
    let (mut vi, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && p[pi] == '%' {
            star = Some((pi, vi));
            pi += 1;
            continue;
        }
        if pi < p.len() {
            if let Some((matched, next)) = one(&p, pi, v[vi]) {
                if matched {
                    vi += 1;
                    pi = next;
                    continue;
                }
            }
        }
        match star {
            Some((sp, sv)) => {
                pi = sp + 1;
                vi = sv + 1;
                star = Some((sp, sv + 1));
            }
            None => return false,
        }
    }
    while pi < p.len() && p[pi] == '%' {
        pi += 1;
    }
    pi == p.len()
}

/// Whether the pattern element at `pi` matches `c`, and where the next
/// element starts.
fn one(p: &[char], pi: usize, c: char) -> Option<(bool, usize)> {
    match p[pi] {
        '_' => Some((true, pi + 1)),
        '[' => {
            let close = p[pi + 1..]
                .iter()
                .position(|&x| x == ']')
                .map(|i| pi + 1 + i)?;
            let mut set = &p[pi + 1..close];
            // `[^]` is a literal caret.
            if set == ['^'] {
                return Some((c == '^', close + 1));
            }
            let negate = set.first() == Some(&'^');
            if negate {
                set = &set[1..];
            }
            let mut hit = false;
            let mut i = 0;
            while i < set.len() {
                if i + 2 < set.len() && (set[i + 1] == '-' || set[i + 1] == '=') {
                    if set[i] <= c && c <= set[i + 2] {
                        hit = true;
                    }
                    i += 3;
                } else {
                    if set[i] == c {
                        hit = true;
                    }
                    i += 1;
                }
            }
            Some((hit != negate, close + 1))
        }
        other => Some((other == c, pi + 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_and_print_back() {
        let q = parse("select * from IIsWebVirtualDirSetting where AccessWrite != TRUE").unwrap();
        assert_eq!(q.class.text, "IIsWebVirtualDirSetting");
        assert_eq!(
            q.to_string(),
            "SELECT * FROM IIsWebVirtualDirSetting WHERE AccessWrite <> TRUE"
        );
        let q = parse(
            "SELECT Name, ServerComment FROM IIsWebServerSetting WHERE (ServerAutoStart = TRUE AND NOT ServerComment LIKE '%test%') OR 8080 <= ServerSize OR AppPoolId IS NOT NULL",
        )
        .unwrap();
        assert_eq!(q.properties.as_ref().unwrap().len(), 2);
        assert_eq!(parse(&q.to_string()).unwrap(), q);
        assert_eq!(
            parse("select * from X where A = 1 or B = 2 or (C = 3 or D = 4) and not (E = 5 and F = 6)")
                .unwrap()
                .to_string(),
            "SELECT * FROM X WHERE A = 1 OR B = 2 OR (C = 3 OR D = 4) AND NOT (E = 5 AND F = 6)"
        );
        let q = parse("select * from CIM_Setting where __THIS ISA 'IIsWebServerSetting'").unwrap();
        assert!(matches!(q.filter, Some(Expr::Isa { .. })));
        let q = parse("select * from X where 5 < A").unwrap();
        assert_eq!(q.to_string(), "SELECT * FROM X WHERE A > 5");
        let q = parse(r#"select * from X where A = "it's" and B = -3 and C = 2.5"#).unwrap();
        assert_eq!(parse(&q.to_string()).unwrap(), q);
    }

    #[test]
    fn errors_say_where() {
        let cases = [
            ("select from X", 8, "expected a property name"),
            ("select * X", 10, "expected FROM"),
            ("select * from X where", 22, "expected a property name"),
            ("select * from X where A ~ 1", 25, "unexpected character"),
            ("select * from X where A = ", 27, "expected a constant"),
            ("select * from X where A = 'x", 27, "not closed"),
            ("select * from X where A LIKE 5", 30, "LIKE takes a string"),
            ("select * from X where A = NULL", 27, "IS NULL"),
            ("select * from X where (A = 1", 29, "expected ')'"),
            (
                "select * from X where A = 1 B",
                29,
                "expected WHERE or the end",
            ),
            ("delete from X", 1, "expected SELECT"),
            ("select * from X where A IS 5", 28, "expected NULL"),
        ];
        for (text, pos, what) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.status, WbemStatus::InvalidQuery, "{text}");
            assert_eq!(e.position, Some(pos), "{text}: {e}");
            assert!(e.message.contains(what), "{text}: {e}");
        }
        let deep = format!(
            "select * from X where {}A = 1{}",
            "(".repeat(200),
            ")".repeat(200)
        );
        assert!(parse(&deep)
            .unwrap_err()
            .message
            .contains("nested too deeply"));
    }

    #[test]
    fn associators_and_references_parse_and_print_back() {
        let s = parse_statement(
            r#"associators of { IIsWebServer.Name="W3SVC/1" } where resultclass = IIsWebVirtualDir Role=GroupComponent keysonly"#,
        )
        .unwrap();
        let Statement::Assoc(q) = &s else { panic!() };
        assert!(!q.references && q.keys_only);
        assert_eq!(q.path, r#"IIsWebServer.Name="W3SVC/1""#);
        assert_eq!(q.path_position, 18);
        assert_eq!(q.result_class.as_ref().unwrap().text, "IIsWebVirtualDir");
        assert_eq!(parse_statement(&s.to_string()).unwrap(), s);
        // A brace inside the quoted key does not end the path.
        let s = parse_statement(r#"REFERENCES OF {X.Name="a}\"b"} WHERE ClassDefsOnly"#).unwrap();
        let Statement::Assoc(q) = &s else { panic!() };
        assert_eq!(q.path, r#"X.Name="a}\"b""#);
        assert_eq!(parse_statement(&s.to_string()).unwrap(), s);
        for (text, pos) in [
            ("associators {X='1'}", 13),
            ("associators of X='1'", 16),
            ("associators of {X='1'", 16),
            ("associators of {}", 16),
            ("associators of {X='1'} where", 29),
            ("associators of {X='1'} where Role", 34),
            ("associators of {X='1'} where Role = ", 37),
            ("associators of {X='1'} where KeysOnly KeysOnly", 39),
            ("associators of {X='1'} where KeysOnly ClassDefsOnly", 17),
            ("references of {X='1'} where ResultRole = A", 29),
            ("associators of {X='1'} extra", 24),
        ] {
            let e = parse_statement(text).unwrap_err();
            assert_eq!(e.status, WbemStatus::InvalidQuery, "{text}");
            assert_eq!(e.position, Some(pos), "{text}: {e}");
        }
    }

    #[test]
    fn like_patterns() {
        assert!(like("Default Web Site", "%web%"));
        assert!(like("Default Web Site", "default_web_site"));
        assert!(!like("Default Web Site", "web%"));
        assert!(like("abc", "[a-c]b[^x]"));
        assert!(like("a=", "[a=]="));
        assert!(like("^", "[^]"));
        assert!(like("", "%"));
        assert!(!like("", "_"));
        assert!(like("a_b", "a[_]b"));
        assert!(!like("axb", "a[_]b"));
        assert!(like(&"a".repeat(1000), &"%a".repeat(50)));
    }
}
