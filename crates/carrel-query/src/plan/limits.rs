//! Size limits checked on the SQL text before it is parsed.
//!
//! The parser, DataFusion's planner and analyzer, this crate's plan walk and the drop of
//! the syntax tree all recurse over the query. A query nested deeply enough overflows the
//! thread's stack and aborts the process, so the nesting depth is bounded from the
//! tokens, with an explicit stack and no recursion, before any tree exists.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::QueryRejection;

/// Maximum length of the SQL text, in bytes (16 KiB).
pub(crate) const MAX_SQL_BYTES: usize = 16 * 1024;

/// Maximum nesting depth of a query, in levels as [`nesting_depth`] counts them.
pub(crate) const MAX_NESTING_DEPTH: usize = 64;

// Levels per construct. They follow the stack that the debug builds of sqlparser 0.62 and
// DataFusion 55 use per nested construct. Estimates, from the chain length at which
// parsing, planning and analysing overflowed a 2 MiB thread stack on x86-64 Linux: about
// 22 KiB per binary operator, which both parse and plan without recursion, 50 KiB per
// postfix operator, 90 to 110 KiB per bracket, CASE or prefix operator, and 130 KiB per
// subquery. Release builds use several times less.

/// Levels added by a binary operator such as `=`, `OR` or `||`.
const BINARY_LEVELS: usize = 1;
/// Levels added by an operator that DataFusion plans recursively, such as `IS NULL`,
/// `IN`, `BETWEEN`, `LIKE` or `::`.
const POSTFIX_LEVELS: usize = 2;
/// Levels added by a prefix operator: `NOT`, a sign, `EXISTS` or `INTERVAL`.
const PREFIX_LEVELS: usize = 5;
/// Levels added by a pair of brackets, a function call or a `CASE ... END`.
const BRACKET_LEVELS: usize = 5;
/// Levels added by a bracketed query, such as a subquery.
const SUBQUERY_LEVELS: usize = 8;
/// Levels added by each JOIN, set operation, FROM item or WITH query after the first.
const RELATION_LEVELS: usize = 1;

/// Keywords of binary operators.
const BINARY_KEYWORDS: &[Keyword] = &[
    Keyword::AND,
    Keyword::OR,
    Keyword::XOR,
    Keyword::DIV,
    Keyword::OVERLAPS,
];

/// Keywords of infix or postfix operators that are not binary operators in the syntax
/// tree, so that DataFusion plans a chain of them recursively.
const POSTFIX_KEYWORDS: &[Keyword] = &[
    Keyword::IS,
    Keyword::IN,
    Keyword::BETWEEN,
    Keyword::LIKE,
    Keyword::ILIKE,
    Keyword::SIMILAR,
    Keyword::RLIKE,
    Keyword::REGEXP,
    Keyword::COLLATE,
    Keyword::AT,
    Keyword::ESCAPE,
    Keyword::ANY,
    Keyword::ALL,
    Keyword::SOME,
];

/// Keywords of prefix operators, apart from NOT, which can also be infix.
const PREFIX_KEYWORDS: &[Keyword] = &[Keyword::EXISTS, Keyword::INTERVAL];

/// Keywords that combine relations. DataFusion plans a chain of them as a plan tree as
/// deep as the chain is long.
const RELATION_KEYWORDS: &[Keyword] = &[
    Keyword::JOIN,
    Keyword::APPLY,
    Keyword::UNION,
    Keyword::EXCEPT,
    Keyword::INTERSECT,
    Keyword::MINUS,
];

/// Keywords that start a clause, ending the expression before them.
const CLAUSE_KEYWORDS: &[Keyword] = &[
    Keyword::SELECT,
    Keyword::FROM,
    Keyword::WHERE,
    Keyword::GROUP,
    Keyword::HAVING,
    Keyword::ORDER,
    Keyword::LIMIT,
    Keyword::OFFSET,
    Keyword::FETCH,
    Keyword::QUALIFY,
    Keyword::WINDOW,
    Keyword::WITH,
    Keyword::ON,
    Keyword::USING,
];

/// Keywords that start a query, making a bracket around them a subquery.
const QUERY_KEYWORDS: &[Keyword] = &[Keyword::SELECT, Keyword::WITH, Keyword::VALUES];

/// Rejects SQL text longer than [`MAX_SQL_BYTES`] or nested deeper than
/// [`MAX_NESTING_DEPTH`].
pub(crate) fn check_size(sql: &str) -> Result<(), QueryRejection> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(QueryRejection::TooLarge {
            reason: format!(
                "the SQL text has {} bytes and the limit is {MAX_SQL_BYTES} bytes (16 KiB); \
                 shorten it, for example by writing a long OR chain of equalities as \
                 column IN (...)",
                sql.len()
            ),
        });
    }
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize()
        .map_err(|error| QueryRejection::InvalidSql {
            message: error.to_string(),
            help: super::QUERY_FORM.to_owned(),
        })?;
    let depth = nesting_depth(&tokens);
    if depth > MAX_NESTING_DEPTH {
        return Err(QueryRejection::TooLarge {
            reason: format!(
                "it nests about {depth} levels deep and the limit is {MAX_NESTING_DEPTH}, \
                 counting 1 level per binary operator such as OR, 2 per IS, IN, BETWEEN or \
                 LIKE, 5 per bracket, CASE or NOT and 8 per subquery; write a long OR chain \
                 of equalities as column IN (...), remove redundant brackets, or split the \
                 query"
            ),
        });
    }
    Ok(())
}

/// Bounds from above the nesting depth of the query that `tokens` parse into, in levels.
///
/// Within one pair of brackets, each operator adds its levels to the expression it is
/// in, commas and clause keywords separate sibling expressions, and the brackets add
/// their own levels to the deepest expression inside. JOINs, set operations and the
/// commas between FROM items or WITH queries add to the whole bracket level.
pub(crate) fn nesting_depth(tokens: &[Token]) -> usize {
    let mut counter = DepthCounter {
        levels: vec![Level::new(Opening::Root)],
        after_operand: false,
        after_is: false,
    };
    for token in tokens {
        counter.add(token);
    }
    // Unbalanced brackets fail in the parser; until then, count the open ones too.
    while counter.levels.len() > 1 {
        counter.close();
    }
    counter.levels.pop().map_or(0, Level::depth)
}

struct DepthCounter {
    /// The root, then one entry per open bracket or CASE, innermost last.
    levels: Vec<Level>,
    /// Whether the last token ended an operand, which makes a following sign or NOT
    /// infix rather than prefix.
    after_operand: bool,
    /// Whether the last token was IS, so that a following NOT belongs to it.
    after_is: bool,
}

impl DepthCounter {
    fn add(&mut self, token: &Token) {
        if matches!(token, Token::Whitespace(_)) {
            return;
        }
        self.top().note_first_token(token);
        let (after_operand, after_is) = (self.after_operand, self.after_is);
        self.after_operand = false;
        self.after_is = false;
        match token {
            Token::LParen | Token::LBracket | Token::LBrace => {
                self.levels.push(Level::new(Opening::Bracket));
            }
            Token::RParen | Token::RBracket | Token::RBrace => {
                self.close();
                self.after_operand = true;
            }
            Token::Comma => self.top().end_list_item(),
            Token::SemiColon => self.top().end_expression(),
            Token::DoubleColon => self.top().operators += POSTFIX_LEVELS,
            Token::Word(word) if word.quote_style.is_none() => match word.keyword {
                Keyword::CASE => self.levels.push(Level::new(Opening::Case)),
                Keyword::END if self.levels.last().map(|l| l.opening) == Some(Opening::Case) => {
                    self.close();
                    self.after_operand = true;
                }
                Keyword::WHEN | Keyword::THEN | Keyword::ELSE => self.top().end_expression(),
                Keyword::NOT if after_operand || after_is => {}
                Keyword::NOT => self.top().operators += PREFIX_LEVELS,
                Keyword::IS => {
                    self.top().operators += POSTFIX_LEVELS;
                    self.after_is = true;
                }
                keyword if CLAUSE_KEYWORDS.contains(&keyword) => self.top().start_clause(keyword),
                keyword if RELATION_KEYWORDS.contains(&keyword) => {
                    self.top().relations += RELATION_LEVELS;
                    self.top().end_expression();
                }
                keyword if BINARY_KEYWORDS.contains(&keyword) => {
                    self.top().operators += BINARY_LEVELS;
                }
                keyword if POSTFIX_KEYWORDS.contains(&keyword) => {
                    self.top().operators += POSTFIX_LEVELS;
                }
                keyword if PREFIX_KEYWORDS.contains(&keyword) => {
                    self.top().operators += PREFIX_LEVELS;
                }
                _ => self.after_operand = true,
            },
            // `*` at the start of an operand is the wildcard of `COUNT(*)` or `SELECT *`.
            Token::Mul if !after_operand => self.after_operand = true,
            token if is_operand(token) => self.after_operand = true,
            // Any other symbol is an operator: prefix at the start of an operand, such as
            // the sign in `= -1`, and binary after one.
            _ if after_operand => self.top().operators += BINARY_LEVELS,
            _ => self.top().operators += PREFIX_LEVELS,
        }
    }

    fn top(&mut self) -> &mut Level {
        self.levels
            .last_mut()
            .expect("the root level is never closed")
    }

    /// Folds the innermost level into its parent; an unmatched closing bracket is ignored.
    fn close(&mut self) {
        if self.levels.len() < 2 {
            return;
        }
        let closed = self.levels.pop().map_or(0, Level::depth);
        let parent = self.top();
        parent.deepest_child = parent.deepest_child.max(closed);
    }
}

/// Token that opened a level.
#[derive(Clone, Copy, PartialEq)]
enum Opening {
    Root,
    Bracket,
    Case,
}

/// Counts for the tokens between one pair of brackets, inside one CASE, or outside all
/// of them.
struct Level {
    opening: Opening,
    /// Levels that the opening itself adds.
    own_levels: usize,
    /// Whether a token other than whitespace has been seen since the opening.
    seen_token: bool,
    /// Operator levels in the current expression.
    operators: usize,
    /// Depth of the deepest bracket or CASE in the current expression.
    deepest_child: usize,
    /// Largest `operators + deepest_child` of the expressions already ended.
    deepest_expression: usize,
    /// Relation levels anywhere at this level.
    relations: usize,
    /// Whether commas at this level separate FROM items (joined by commas, possibly after
    /// an ON or USING condition) or WITH queries.
    in_relation_list: bool,
}

impl Level {
    fn new(opening: Opening) -> Self {
        Level {
            opening,
            own_levels: match opening {
                Opening::Root => 1,
                Opening::Bracket | Opening::Case => BRACKET_LEVELS,
            },
            seen_token: false,
            operators: 0,
            deepest_child: 0,
            deepest_expression: 0,
            relations: 0,
            in_relation_list: false,
        }
    }

    /// Marks a bracket whose first token starts a query as a subquery.
    fn note_first_token(&mut self, token: &Token) {
        if self.seen_token {
            return;
        }
        self.seen_token = true;
        let starts_query = matches!(
            token,
            Token::Word(word) if word.quote_style.is_none() && QUERY_KEYWORDS.contains(&word.keyword)
        );
        if self.opening == Opening::Bracket && starts_query {
            self.own_levels = SUBQUERY_LEVELS;
        }
    }

    fn start_clause(&mut self, keyword: Keyword) {
        self.end_expression();
        self.in_relation_list = matches!(
            keyword,
            Keyword::FROM | Keyword::WITH | Keyword::ON | Keyword::USING
        );
    }

    fn end_list_item(&mut self) {
        if self.in_relation_list {
            self.relations += RELATION_LEVELS;
        }
        self.end_expression();
    }

    fn end_expression(&mut self) {
        self.deepest_expression = self
            .deepest_expression
            .max(self.operators + self.deepest_child);
        self.operators = 0;
        self.deepest_child = 0;
    }

    fn depth(mut self) -> usize {
        self.end_expression();
        self.own_levels + self.relations + self.deepest_expression
    }
}

/// Returns whether `token` is a literal or placeholder, which ends an operand.
fn is_operand(token: &Token) -> bool {
    matches!(
        token,
        Token::Number(..)
            | Token::Char(_)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedByteStringLiteral(_)
            | Token::TripleDoubleQuotedByteStringLiteral(_)
            | Token::SingleQuotedRawStringLiteral(_)
            | Token::DoubleQuotedRawStringLiteral(_)
            | Token::TripleSingleQuotedRawStringLiteral(_)
            | Token::TripleDoubleQuotedRawStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::QuoteDelimitedStringLiteral(_)
            | Token::NationalQuoteDelimitedStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::Placeholder(_)
            | Token::Word(_)
            | Token::Period
            | Token::EOF
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth(sql: &str) -> usize {
        let tokens = Tokenizer::new(&GenericDialect {}, sql).tokenize().unwrap();
        nesting_depth(&tokens)
    }

    #[test]
    fn binary_chain_adds_one_level_per_operator() {
        let short = depth("SELECT 1 FROM t WHERE a = 1 OR a = 2");
        let long = depth("SELECT 1 FROM t WHERE a = 1 OR a = 2 OR a = 3 OR a = 4");
        assert_eq!(long, short + 4 * BINARY_LEVELS);
    }

    #[test]
    fn in_list_stays_flat() {
        let items: Vec<String> = (0..1000).map(|i| format!("-{i}")).collect();
        let sql = format!("SELECT COUNT(*) FROM t WHERE a IN ({})", items.join(", "));
        let expected = 1 + POSTFIX_LEVELS + BRACKET_LEVELS + PREFIX_LEVELS;
        assert_eq!(depth(&sql), expected);
    }

    #[test]
    fn brackets_and_prefix_operators_nest() {
        assert_eq!(depth("((a))") - depth("a"), 2 * BRACKET_LEVELS);
        assert_eq!(depth("NOT NOT a") - depth("a"), 2 * PREFIX_LEVELS);
        assert_eq!(depth("x = - - 1") - depth("x = 1"), 2 * PREFIX_LEVELS);
        assert_eq!(depth("x = (SELECT 1)") - depth("x = 1"), SUBQUERY_LEVELS);
        let case = "CASE WHEN a THEN CASE WHEN b THEN 1 END END";
        assert_eq!(depth(case) - depth("a"), 2 * BRACKET_LEVELS);
    }

    #[test]
    fn infix_not_and_minus_are_not_prefix() {
        assert_eq!(depth("a NOT IN (1)"), depth("a IN (1)"));
        assert_eq!(depth("a IS NOT NULL"), depth("a IS NULL"));
        assert_eq!(depth("a - 1"), depth("a + 1"));
        assert_eq!(depth("a - 1") - depth("a"), BINARY_LEVELS);
    }

    #[test]
    fn postfix_chain_adds_two_levels_per_operator() {
        let chain = depth("a IS NULL IS NULL IS NULL");
        assert_eq!(chain - depth("a"), 3 * POSTFIX_LEVELS);
        assert_eq!(depth("a::INT::INT") - depth("a"), 2 * POSTFIX_LEVELS);
    }

    #[test]
    fn select_items_are_siblings() {
        let one = depth("SELECT a + b FROM t");
        let many = depth("SELECT a + b, c + d, e + f, g + h FROM t");
        assert_eq!(one, many);
    }

    #[test]
    fn relation_chains_are_counted() {
        let base = depth("SELECT 1 FROM t");
        assert_eq!(depth("SELECT 1 FROM t, t, t"), base + 2 * RELATION_LEVELS);
        assert_eq!(
            depth("SELECT 1 FROM t JOIN t USING (x) JOIN t USING (x)"),
            base + 2 * RELATION_LEVELS + BRACKET_LEVELS
        );
        assert_eq!(
            depth("SELECT 1 UNION SELECT 1 UNION SELECT 1"),
            base + 2 * RELATION_LEVELS
        );
        let with = "WITH a AS (SELECT 1), b AS (SELECT 1) SELECT 1 FROM t";
        assert_eq!(depth(with), base + RELATION_LEVELS + SUBQUERY_LEVELS);
    }

    #[test]
    fn quoted_keyword_is_a_name() {
        assert_eq!(depth(r#"SELECT "not" FROM t"#), depth("SELECT a FROM t"));
    }

    #[test]
    fn unbalanced_brackets_still_count() {
        assert_eq!(depth("((a"), 1 + 2 * BRACKET_LEVELS);
        assert_eq!(depth("a))"), 1);
    }
}
