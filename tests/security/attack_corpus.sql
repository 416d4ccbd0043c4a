-- Adversarial queries from an untrusted analyst, with the outcome the gateway must give.
-- Each case: "-- title: ...", "-- category: ...", "-- expect: answered" or the problem code it is
-- refused with, optional "-- delta: ..." (default 0), then the SQL. In the SQL, \u{XXXX} stands for the
-- character U+XXXX (invisible and direction-changing characters stay visible in this file).
-- Parametric families (templates x columns) are generated in corpus.py; these are the hand-written ones.

-- ============================================================== subqueries and CTEs
-- title: CTE re-exposing raw rows
-- category: subquery
-- expect: unsupported_sql
WITH t AS (SELECT * FROM tx) SELECT COUNT(*) FROM t;

-- title: CTE shadowing the table name
-- category: subquery
-- expect: unsupported_sql
WITH tx AS (SELECT * FROM raw_tx) SELECT COUNT(*) FROM tx;

-- title: CTE that selects one unit's rows
-- category: subquery
-- expect: unsupported_sql
WITH one AS (SELECT amount FROM tx WHERE cid = 7) SELECT SUM(amount) FROM one;

-- title: recursive CTE
-- category: subquery
-- expect: unsupported_sql
WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT COUNT(*) FROM tx;

-- title: materialized CTE
-- category: subquery
-- expect: unsupported_sql
WITH t AS MATERIALIZED (SELECT cid FROM tx) SELECT COUNT(*) FROM tx;

-- title: CTE unused but reading the unit
-- category: subquery
-- expect: unsupported_sql
WITH ids AS (SELECT DISTINCT cid FROM tx) SELECT COUNT(*) FROM tx;

-- title: two CTEs chained
-- category: subquery
-- expect: unsupported_sql
WITH a AS (SELECT * FROM tx), b AS (SELECT * FROM a WHERE amount > 900) SELECT COUNT(*) FROM tx;

-- title: subquery in FROM selecting the unit
-- category: subquery
-- expect: unsupported_sql
SELECT COUNT(*) FROM (SELECT cid FROM tx) s;

-- title: subquery in FROM aggregating per unit
-- category: subquery
-- expect: answered
SELECT AVG(n) FROM (SELECT cid, COUNT(*) AS n FROM tx GROUP BY cid) s;

-- title: subquery in FROM with LIMIT 1 row
-- category: subquery
-- expect: unsupported_sql
SELECT SUM(amount) FROM (SELECT amount FROM tx ORDER BY amount DESC LIMIT 1) s;

-- title: scalar subquery in WHERE reading the maximum
-- category: subquery
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE amount = (SELECT MAX(amount) FROM tx);

-- title: scalar subquery in the select list
-- category: subquery
-- expect: unsupported_sql
SELECT (SELECT amount FROM tx LIMIT 1) AS a, COUNT(*) FROM tx;

-- title: scalar subquery inside an aggregate
-- category: subquery
-- expect: unsupported_sql
SELECT SUM((SELECT amount FROM tx LIMIT 1)) FROM tx;

-- title: IN subquery on the unit
-- category: subquery
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE cid IN (SELECT cid FROM cust WHERE age > 90);

-- title: NOT IN subquery
-- category: subquery
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE cid NOT IN (SELECT cid FROM acct);

-- title: EXISTS correlated subquery
-- category: subquery
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx t WHERE EXISTS (SELECT 1 FROM cust c WHERE c.cid = t.cid AND c.age > 90);

-- title: NOT EXISTS subquery
-- category: subquery
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE NOT EXISTS (SELECT 1 FROM cust);

-- title: ANY subquery
-- category: subquery
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE amount > ANY (SELECT amount FROM tx);

-- title: ALL subquery
-- category: subquery
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE amount >= ALL (SELECT amount FROM tx);

-- title: subquery in HAVING
-- category: subquery
-- expect: unsupported_sql
SELECT cat, COUNT(*) FROM tx GROUP BY cat HAVING COUNT(*) > (SELECT COUNT(*) FROM cust);

-- title: subquery in GROUP BY
-- category: subquery
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx GROUP BY (SELECT 1);

-- title: subquery in ORDER BY
-- category: subquery
-- expect: unsupported_sql
SELECT cat, COUNT(*) FROM tx GROUP BY cat ORDER BY (SELECT MAX(amount) FROM tx);

-- title: subquery as a JOIN source
-- category: subquery
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx t JOIN (SELECT cid FROM cust) c ON t.cid = c.cid;

-- title: LATERAL subquery
-- category: subquery
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx t, LATERAL (SELECT t.amount AS a) s;

-- title: subquery in CASE
-- category: subquery
-- expect: unsupported_sql
SELECT SUM(CASE WHEN cid = (SELECT MIN(cid) FROM cust) THEN amount ELSE 0 END) FROM tx;

-- title: ARRAY subquery
-- category: subquery
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE ARRAY(SELECT cid FROM tx) IS NOT NULL;

-- title: FROM-first subquery
-- category: subquery
-- expect: unsupported_sql
SELECT COUNT(*) FROM (FROM tx);

-- title: VALUES list as a source
-- category: subquery
-- expect: unsupported_sql
SELECT COUNT(*) FROM (VALUES (1), (2)) v(x);

-- title: parenthesised table
-- category: subquery
-- expect: unsupported_sql
SELECT COUNT(*) FROM (tx);

-- title: parenthesised whole query
-- category: subquery
-- expect: unsupported_sql
(SELECT COUNT(*) FROM tx);

-- title: subquery in IN list of a filter on tid
-- category: subquery
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE tid IN (SELECT tid FROM tx WHERE amount > 999);

-- title: subquery inside COALESCE
-- category: subquery
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE COALESCE((SELECT 1), 0) = 1;

-- ============================================================== set operations
-- title: UNION of two counts
-- category: set_operation
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx UNION SELECT COUNT(*) FROM cust;

-- title: UNION ALL with raw rows
-- category: set_operation
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx UNION ALL SELECT amount FROM tx;

-- title: UNION of raw units
-- category: set_operation
-- expect: unsupported_sql
SELECT cid FROM tx UNION SELECT cid FROM cust;

-- title: INTERSECT of units of two tables
-- category: set_operation
-- expect: unsupported_sql
SELECT cid FROM tx INTERSECT SELECT cid FROM acct;

-- title: EXCEPT of units of two tables
-- category: set_operation
-- expect: unsupported_sql
SELECT cid FROM cust EXCEPT SELECT cid FROM tx;

-- title: INTERSECT ALL
-- category: set_operation
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx INTERSECT ALL SELECT COUNT(*) FROM tx;

-- title: EXCEPT ALL
-- category: set_operation
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx EXCEPT ALL SELECT COUNT(*) FROM cust;

-- title: UNION BY NAME
-- category: set_operation
-- expect: unsupported_sql
SELECT COUNT(*) AS n FROM tx UNION BY NAME SELECT COUNT(*) AS n FROM cust;

-- title: parenthesised UNION with ORDER BY and LIMIT
-- category: set_operation
-- expect: unsupported_sql
(SELECT COUNT(*) FROM tx) UNION (SELECT COUNT(*) FROM cust) ORDER BY 1 LIMIT 1;

-- title: three-way UNION
-- category: set_operation
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx UNION SELECT COUNT(*) FROM cust UNION SELECT COUNT(*) FROM acct;

-- title: UNION inside a subquery
-- category: set_operation
-- expect: unsupported_sql
SELECT COUNT(*) FROM (SELECT cid FROM tx UNION SELECT cid FROM cust) u;

-- title: EXCEPT to isolate one unit's aggregate
-- category: set_operation
-- expect: unsupported_sql
SELECT SUM(amount) FROM tx EXCEPT SELECT SUM(amount) FROM tx WHERE cid <> 7;

-- title: UNION of a noisy query and a public table
-- category: set_operation
-- expect: unsupported_sql
SELECT COUNT(*) FROM rates UNION SELECT COUNT(*) FROM tx;

-- title: UNION with a CTE
-- category: set_operation
-- expect: unsupported_sql
WITH t AS (SELECT 1) SELECT COUNT(*) FROM tx UNION SELECT COUNT(*) FROM tx;

-- ============================================================== comments
-- title: line comment at the end
-- category: comments_unicode
-- expect: answered
SELECT COUNT(*) FROM tx -- just counting
;

-- title: block comment between tokens
-- category: comments_unicode
-- expect: answered
SELECT /* hi */ COUNT(*) /* there */ FROM /* x */ tx;

-- title: nested block comment
-- category: comments_unicode
-- expect: answered
SELECT COUNT(*) FROM tx /* outer /* inner */ still outer */;

-- title: comment hiding a second statement
-- category: comments_unicode
-- expect: answered
SELECT COUNT(*) FROM tx /* ; DROP TABLE tx; */;

-- title: line comment hiding a DROP
-- category: comments_unicode
-- expect: answered
SELECT COUNT(*) FROM tx -- ; DROP TABLE tx
;

-- title: comment commenting out a WHERE on the unit
-- category: comments_unicode
-- expect: answered
SELECT SUM(amount) FROM tx -- WHERE cid = 7
;

-- title: unterminated block comment
-- category: comments_unicode
-- expect: invalid_sql
SELECT COUNT(*) FROM tx /* never closed;

-- title: comment splitting a keyword
-- category: comments_unicode
-- expect: invalid_sql
SEL/**/ECT COUNT(*) FROM tx;

-- title: comment inside a function call
-- category: comments_unicode
-- expect: answered
SELECT SUM(/* the amount */ amount) FROM tx;

-- title: comment closing token inside a string literal
-- category: comments_unicode
-- expect: answered
SELECT COUNT(*) FROM tx WHERE cat = '*/ OR 1=1 --';

-- title: comment opener inside a string literal
-- category: comments_unicode
-- expect: answered
SELECT COUNT(*) FROM tx WHERE cat = '/* x';

-- title: double dash inside a string literal
-- category: comments_unicode
-- expect: answered
SELECT COUNT(*) FROM tx WHERE cat = '--';

-- title: MySQL hash comment
-- category: comments_unicode
-- expect: invalid_sql
SELECT COUNT(*) FROM tx # comment
;

-- title: comment with unicode and RTL override
-- category: comments_unicode
-- expect: answered
SELECT COUNT(*) FROM tx /* \u{202E} gnirts desrever */;

-- title: comment hiding GROUP BY on the unit
-- category: comments_unicode
-- expect: answered
SELECT cat, COUNT(*) FROM tx GROUP BY cat /*, cid */;

-- title: block comment replacing whitespace everywhere
-- category: comments_unicode
-- expect: answered
SELECT/**/COUNT(*)/**/FROM/**/tx/**/WHERE/**/amount>1;

-- title: comment between table and alias
-- category: comments_unicode
-- expect: answered
SELECT COUNT(*) FROM tx /* alias */ t WHERE t.amount > 1;

-- title: comment-only query
-- category: comments_unicode
-- expect: unsupported_sql
/* nothing here */;

-- title: line comment only
-- category: comments_unicode
-- expect: unsupported_sql
-- title-like text but not a query
;

-- ============================================================== unicode
-- title: Cyrillic homoglyph in the table name
-- category: comments_unicode
-- expect: unknown_table
SELECT COUNT(*) FROM t\u{0445};

-- title: Cyrillic homoglyph in a column name
-- category: comments_unicode
-- expect: unknown_column
SELECT SUM(\u{0430}mount) FROM tx;

-- title: Greek homoglyph in the unit name in GROUP BY
-- category: comments_unicode
-- expect: unknown_column
SELECT c\u{03B9}d, COUNT(*) FROM tx GROUP BY 1;

-- title: Cyrillic homoglyph of the unit in a filter
-- category: comments_unicode
-- expect: unknown_column
SELECT COUNT(*) FROM tx WHERE \u{0441}id = 7;

-- title: zero-width space inside a column name
-- category: comments_unicode
-- expect: unknown_column
SELECT SUM(am\u{200B}ount) FROM tx;

-- title: zero-width joiner inside the unit name
-- category: comments_unicode
-- expect: unknown_column
SELECT ci\u{200D}d, COUNT(*) FROM tx GROUP BY 1;

-- title: byte order mark at the start
-- category: comments_unicode
-- expect: invalid_sql
\u{FEFF}SELECT COUNT(*) FROM tx;

-- title: zero-width space between tokens
-- category: comments_unicode
-- expect: unknown_column
SELECT COUNT(*) FROM tx WHERE amount\u{200B} > 1;

-- title: word joiner inside a keyword
-- category: comments_unicode
-- expect: invalid_sql
SEL\u{2060}ECT COUNT(*) FROM tx;

-- title: RTL override inside a string literal
-- category: comments_unicode
-- expect: answered
SELECT COUNT(*) FROM tx WHERE cat = '\u{202E}doof';

-- title: RTL override as a bare token
-- category: comments_unicode
-- expect: invalid_sql
SELECT COUNT(*) FROM tx WHERE amount > 1 \u{202E};

-- title: RTL override inside a quoted alias
-- category: comments_unicode
-- expect: answered
SELECT COUNT(*) AS "\u{202E}n" FROM tx;

-- title: RTL isolate around the unit in a quoted identifier
-- category: comments_unicode
-- expect: unknown_column
SELECT "\u{2067}cid\u{2069}", COUNT(*) FROM tx GROUP BY 1;

-- title: fullwidth digit as a number
-- category: comments_unicode
-- expect: unknown_column
SELECT COUNT(*) FROM tx WHERE amount > \u{FF11}\u{FF10}\u{FF10};

-- title: fullwidth keyword
-- category: comments_unicode
-- expect: invalid_sql
\u{FF33}\u{FF25}\u{FF2C}\u{FF25}\u{FF23}\u{FF34} COUNT(*) FROM tx;

-- title: fullwidth asterisk
-- category: comments_unicode
-- expect: unknown_column
SELECT COUNT(\u{FF0A}) FROM tx;

-- title: Arabic-Indic digits in LIMIT
-- category: comments_unicode
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx LIMIT \u{0661};

-- title: non-breaking space as whitespace
-- category: comments_unicode
-- expect: answered
SELECT\u{00A0}COUNT(*) FROM tx;

-- title: quoted unit with upper case in GROUP BY
-- category: comments_unicode
-- expect: unsupported_sql
SELECT "CID", COUNT(*) FROM tx GROUP BY 1;

-- title: quoted unit with mixed case in GROUP BY
-- category: comments_unicode
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx GROUP BY "cId";

-- title: quoted table name with odd case
-- category: comments_unicode
-- expect: answered
SELECT COUNT(*) FROM "Tx";

-- title: quoted column with odd case in SUM
-- category: comments_unicode
-- expect: answered
SELECT SUM("AmOuNt") FROM tx;

-- title: quoted identifier with an embedded quote
-- category: comments_unicode
-- expect: unknown_column
SELECT SUM("amount""") FROM tx;

-- title: quoted identifier with a trailing space
-- category: comments_unicode
-- expect: unknown_column
SELECT SUM("amount ") FROM tx;

-- title: emoji column alias
-- category: comments_unicode
-- expect: answered
SELECT COUNT(*) AS "💰" FROM tx;

-- title: NFD form of a public category
-- category: comments_unicode
-- expect: answered
SELECT COUNT(*) FROM tx WHERE cat = 'cafe\u{0301} ☕';

-- title: combining characters on an identifier
-- category: comments_unicode
-- expect: unknown_column
SELECT SUM(amount\u{0301}) FROM tx;

-- title: line separator as whitespace
-- category: comments_unicode
-- expect: answered
SELECT COUNT(*)\u{2028}FROM tx;

-- title: NUL character in a string literal
-- category: comments_unicode
-- expect: answered
SELECT COUNT(*) FROM tx WHERE cat = 'food\u{0000}';

-- title: NUL character between tokens
-- category: comments_unicode
-- expect: unknown_table
SELECT COUNT(*) FROM tx\u{0000};

-- title: Turkish dotted capital I in the unit name
-- category: comments_unicode
-- expect: unknown_column
SELECT COUNT(*) FROM tx GROUP BY "C\u{0130}D";

-- title: unicode escape string literal
-- category: comments_unicode
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE cat = U&'\0066ood';

-- title: escape string literal
-- category: comments_unicode
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE cat = E'\x66ood';

-- title: dollar-quoted string literal
-- category: comments_unicode
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE cat = $$food$$;

-- ============================================================== several statements
-- title: a count then a DROP
-- category: multi_statement
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx; DROP TABLE tx;

-- title: a count then a raw select
-- category: multi_statement
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx; SELECT amount FROM tx;

-- title: a PRAGMA before the count
-- category: multi_statement
-- expect: unsupported_sql
PRAGMA threads=1; SELECT COUNT(*) FROM tx;

-- title: a SET before the count
-- category: multi_statement
-- expect: unsupported_sql
SET enable_external_access = true; SELECT COUNT(*) FROM tx;

-- title: ATTACH then count
-- category: multi_statement
-- expect: unsupported_sql
ATTACH ':memory:' AS m; SELECT COUNT(*) FROM tx;

-- title: two counts
-- category: multi_statement
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx; SELECT COUNT(*) FROM cust;

-- title: statement after a line comment line
-- category: multi_statement
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx; -- and then
SELECT SUM(amount) FROM tx;

-- title: trailing semicolons only
-- category: multi_statement
-- expect: answered
SELECT COUNT(*) FROM tx;;;

-- title: semicolon inside a string literal
-- category: multi_statement
-- expect: answered
SELECT COUNT(*) FROM tx WHERE cat = 'a; DROP TABLE tx';

-- title: semicolon inside a quoted alias
-- category: multi_statement
-- expect: answered
SELECT COUNT(*) AS "n; DROP TABLE tx" FROM tx;

-- title: semicolon inside a block comment
-- category: multi_statement
-- expect: answered
SELECT COUNT(*) FROM tx /* ; SELECT amount FROM tx */;

-- title: leading semicolon
-- category: multi_statement
-- expect: answered
; SELECT COUNT(*) FROM tx;

-- title: BEGIN and COMMIT around a count
-- category: multi_statement
-- expect: unsupported_sql
BEGIN; SELECT COUNT(*) FROM tx; COMMIT;

-- title: INSERT then count
-- category: multi_statement
-- expect: unsupported_sql
INSERT INTO tx VALUES (1); SELECT COUNT(*) FROM tx;

-- title: CREATE MACRO then use it
-- category: multi_statement
-- expect: unsupported_sql
CREATE MACRO leak(x) AS x; SELECT COUNT(*) FROM tx;

-- title: COPY after the count
-- category: multi_statement
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx; COPY tx TO '/tmp/leak.csv';

-- title: a count then an unparseable tail
-- category: multi_statement
-- expect: invalid_sql
SELECT COUNT(*) FROM tx; SELEC amount FROM tx;

-- title: newline-separated statements without semicolon
-- category: multi_statement
-- expect: invalid_sql
SELECT COUNT(*) FROM tx
SELECT amount FROM tx;

-- title: statement separated by a semicolon in a line comment only
-- category: multi_statement
-- expect: answered
SELECT COUNT(*) FROM tx -- ; SELECT amount FROM tx
;

-- ============================================================== NULL tricks
-- title: COUNT of NULL
-- category: null_tricks
-- expect: answered
SELECT COUNT(NULL) FROM tx;

-- title: SUM of NULL
-- category: null_tricks
-- expect: unsupported_sql
SELECT SUM(NULL) FROM tx;

-- title: AVG of NULL
-- category: null_tricks
-- expect: unsupported_sql
SELECT AVG(NULL) FROM tx;

-- title: MEDIAN of NULL
-- category: null_tricks
-- expect: unsupported_sql
SELECT MEDIAN(NULL) FROM tx;

-- title: GROUP BY NULL
-- category: null_tricks
-- expect: answered
SELECT NULL AS k, COUNT(*) FROM tx GROUP BY k;

-- title: GROUP BY NULL with HAVING on the key
-- category: null_tricks
-- expect: answered
SELECT NULL AS k, COUNT(*) FROM tx GROUP BY k HAVING k > 5;

-- title: WHERE NULL
-- category: null_tricks
-- expect: answered
SELECT COUNT(*) FROM tx WHERE NULL;

-- title: WHERE NULL = NULL
-- category: null_tricks
-- expect: answered
SELECT COUNT(*) FROM tx WHERE NULL = NULL;

-- title: WHERE NOT NULL
-- category: null_tricks
-- expect: answered
SELECT COUNT(*) FROM tx WHERE NOT NULL;

-- title: NULL IN NULL list
-- category: null_tricks
-- expect: answered
SELECT COUNT(*) FROM tx WHERE qty IN (NULL);

-- title: NOT IN with a NULL
-- category: null_tricks
-- expect: answered
SELECT COUNT(*) FROM tx WHERE qty NOT IN (1, NULL);

-- title: unit IS NULL
-- category: null_tricks
-- expect: answered
SELECT COUNT(*) FROM tx WHERE cid IS NULL;

-- title: COALESCE to a huge value in SUM
-- category: null_tricks
-- expect: answered
SELECT SUM(COALESCE(qty, 1000000)) FROM tx;

-- title: COALESCE of the unit
-- category: null_tricks
-- expect: answered
SELECT COUNT(*) FROM tx WHERE COALESCE(cid, tid) = 7;

-- title: COALESCE of ids of two engine types
-- category: null_tricks
-- expect: answered
SELECT COUNT(DISTINCT COALESCE(cid, tid)) FROM tx;

-- title: LEAST of ids of two engine types
-- category: null_tricks
-- expect: answered
SELECT COUNT(*) FROM tx WHERE LEAST(cid, tid) = '5';

-- title: CASE over ids of two engine types
-- category: null_tricks
-- expect: answered
SELECT COUNT(*) FROM tx WHERE CASE WHEN flag THEN cid ELSE tid END = 7;

-- title: NULL BETWEEN a number and an id
-- category: null_tricks
-- expect: answered
SELECT COUNT(*) FROM tx WHERE NULL BETWEEN amount AND cid;

-- title: NULL BETWEEN text and a number
-- category: null_tricks
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE NULL BETWEEN 'a' AND 5;

-- title: NULL IN a list of a number and an id
-- category: null_tricks
-- expect: answered
SELECT COUNT(*) FROM tx WHERE NULL IN (amount, cid);

-- title: NULLIF is not supported
-- category: null_tricks
-- expect: unsupported_sql
SELECT SUM(NULLIF(qty, 0)) FROM tx;

-- title: IFNULL in a filter
-- category: null_tricks
-- expect: answered
SELECT COUNT(*) FROM tx WHERE IFNULL(qty, 0) > 1;

-- title: IS DISTINCT FROM NULL
-- category: null_tricks
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE qty IS DISTINCT FROM NULL;

-- title: CASE producing NULL for all but one row
-- category: null_tricks
-- expect: answered
SELECT COUNT(CASE WHEN tid = 42 THEN 1 END) FROM tx;

-- title: NULL IS TRUE
-- category: null_tricks
-- expect: answered
SELECT COUNT(*) FROM tx WHERE NULL IS TRUE;

-- title: nullable key null group
-- category: null_tricks
-- expect: answered
SELECT note, COUNT(*) FROM tx GROUP BY note HAVING note IS NULL;

-- title: qty IS NULL as a key
-- category: null_tricks
-- expect: answered
-- delta: 1e-6
SELECT qty IS NULL AS k, COUNT(*) FROM tx GROUP BY k;

-- title: COALESCE of note and a constant as a key
-- category: null_tricks
-- expect: answered
-- delta: 1e-6
SELECT COALESCE(note, 'none') AS k, COUNT(*) FROM tx GROUP BY k;

-- title: SUM divided by COUNT of a nullable column
-- category: null_tricks
-- expect: answered
SELECT SUM(qty) / COUNT(qty) AS r FROM tx;

-- title: MIN and MAX of a nullable column
-- category: null_tricks
-- expect: answered
SELECT MIN(qty), MAX(qty) FROM tx;

-- title: LEAST with NULL only
-- category: null_tricks
-- expect: unsupported_sql
SELECT SUM(LEAST(NULL, NULL)) FROM tx;

-- title: NULL compared with a date
-- category: null_tricks
-- expect: answered
SELECT COUNT(*) FROM tx WHERE ts > NULL;

-- title: CAST of NULL to a date in a key
-- category: null_tricks
-- expect: answered
-- delta: 1e-6
SELECT CAST(NULL AS DATE) AS d, COUNT(*) FROM tx GROUP BY d;

-- title: NULL in a BETWEEN bound
-- category: null_tricks
-- expect: answered
SELECT COUNT(*) FROM tx WHERE amount BETWEEN NULL AND 5;

-- title: COUNT of a CASE that is NULL only for the unit 7
-- category: null_tricks
-- expect: answered
SELECT COUNT(CASE WHEN cid = 7 THEN NULL ELSE 1 END) FROM tx;

-- title: AVG over an empty selection through NULL
-- category: null_tricks
-- expect: answered
SELECT AVG(amount) FROM tx WHERE qty IS NULL AND qty IS NOT NULL;

-- ============================================================== CASE tricks
-- title: CASE isolates one transaction in SUM
-- category: case_tricks
-- expect: answered
SELECT SUM(CASE WHEN tid = 42 THEN amount ELSE 0 END) FROM tx;

-- title: CASE isolates one transaction in AVG
-- category: case_tricks
-- expect: answered
SELECT AVG(CASE WHEN tid = 42 THEN amount END) FROM tx;

-- title: CASE isolates one transaction in MAX
-- category: case_tricks
-- expect: answered
SELECT MAX(CASE WHEN tid = 42 THEN amount END) FROM tx;

-- title: CASE isolates one transaction in MEDIAN
-- category: case_tricks
-- expect: answered
SELECT MEDIAN(CASE WHEN tid = 42 THEN amount ELSE 0 END) FROM tx;

-- title: CASE isolates one transaction in VARIANCE
-- category: case_tricks
-- expect: answered
SELECT VARIANCE(CASE WHEN tid = 42 THEN amount END) FROM tx;

-- title: CASE isolates one unit and timestamp
-- category: case_tricks
-- expect: answered
SELECT SUM(CASE WHEN cid = 7 AND ts = '2025-03-01 10:00:00' THEN amount ELSE 0 END) FROM tx;

-- title: CASE returning the unit
-- category: case_tricks
-- expect: unsupported_sql
SELECT SUM(CASE WHEN tid = 42 THEN cid END) FROM tx;

-- title: CASE returning a transaction id
-- category: case_tricks
-- expect: unsupported_sql
SELECT MAX(CASE WHEN amount > 999 THEN tid END) FROM tx;

-- title: CASE key that names one transaction
-- category: case_tricks
-- expect: answered
SELECT CASE WHEN tid = 42 THEN 'hit' ELSE 'miss' END AS k, SUM(amount) FROM tx GROUP BY k;

-- title: CASE key returning a raw column value
-- category: case_tricks
-- expect: unsupported_sql
SELECT CASE WHEN tid = 42 THEN city ELSE 'x' END AS k, COUNT(*) FROM tx GROUP BY k;

-- title: CASE key returning a raw column value with delta
-- category: case_tricks
-- expect: answered
-- delta: 1e-6
SELECT CASE WHEN tid = 42 THEN city ELSE 'x' END AS k, COUNT(*) FROM tx GROUP BY k;

-- title: CASE key returning the amount
-- category: case_tricks
-- expect: unsupported_sql
SELECT CASE WHEN tid = 42 THEN amount END AS k, COUNT(*) FROM tx GROUP BY k;

-- title: CASE key on the unit
-- category: case_tricks
-- expect: unsupported_sql
SELECT CASE WHEN cid = 7 THEN 'a' ELSE 'b' END AS k, COUNT(*) FROM tx GROUP BY k;

-- title: CASE key returning the unit
-- category: case_tricks
-- expect: unsupported_sql
-- delta: 1e-6
SELECT CASE WHEN flag THEN cid ELSE tid END AS k, COUNT(*) FROM tx GROUP BY k;

-- title: simple CASE on a transaction id in WHERE
-- category: case_tricks
-- expect: answered
SELECT COUNT(*) FROM tx WHERE CASE tid WHEN 42 THEN TRUE ELSE FALSE END;

-- title: IF selecting one row
-- category: case_tricks
-- expect: answered
SELECT SUM(IF(tid = 42, amount, 0)) FROM tx;

-- title: IIF selecting one row
-- category: case_tricks
-- expect: answered
SELECT SUM(IIF(tid = 42, amount, 0)) FROM tx;

-- title: CASE with branches of different types
-- category: case_tricks
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE CASE WHEN flag THEN cid ELSE 'x' END = 5;

-- title: CASE amplifying one row beyond the bounds
-- category: case_tricks
-- expect: answered
SELECT SUM(CASE WHEN tid = 42 THEN amount * 1000000 ELSE 0 END) FROM tx;

-- title: CASE amplifying one row without bounds
-- category: case_tricks
-- expect: unsupported_sql
SELECT SUM(CASE WHEN tid = 42 THEN CAST(city AS DOUBLE) ELSE 0 END) FROM tx;

-- title: nested CASE selecting one row
-- category: case_tricks
-- expect: answered
SELECT SUM(CASE WHEN cid = 7 THEN CASE WHEN tid = 42 THEN amount ELSE 0 END ELSE 0 END) FROM tx;

-- title: CASE over a noisy aggregate in the select list
-- category: case_tricks
-- expect: answered
SELECT CASE WHEN COUNT(*) > 100 THEN 'big' ELSE 'small' END AS size FROM tx;

-- title: CASE over a key and an aggregate
-- category: case_tricks
-- expect: answered
SELECT cat, CASE WHEN cat = 'food' THEN SUM(amount) END AS s FROM tx GROUP BY cat;

-- title: CASE in HAVING on a raw column
-- category: case_tricks
-- expect: unsupported_sql
SELECT cat, COUNT(*) FROM tx GROUP BY cat HAVING CASE WHEN amount > 5 THEN TRUE END;

-- title: CASE in ORDER BY on the unit
-- category: case_tricks
-- expect: unsupported_sql
SELECT cat, COUNT(*) FROM tx GROUP BY cat ORDER BY CASE WHEN cid = 7 THEN 0 ELSE 1 END;

-- title: CASE counting one unit in COUNT DISTINCT
-- category: case_tricks
-- expect: answered
SELECT COUNT(DISTINCT CASE WHEN cid = 7 THEN city END) FROM tx;

-- title: CASE on a timestamp equality
-- category: case_tricks
-- expect: answered
SELECT SUM(CASE WHEN ts = '2025-06-01 12:00:00' THEN 1 ELSE 0 END) FROM tx;

-- title: CASE on an amount equality
-- category: case_tricks
-- expect: answered
SELECT COUNT(*) FROM tx WHERE CASE WHEN amount = 123.45 THEN TRUE ELSE FALSE END;

-- title: CASE with no ELSE as a public key
-- category: case_tricks
-- expect: answered
SELECT CASE WHEN amount > 500 THEN 'big' END AS k, COUNT(*) FROM tx GROUP BY k;

-- title: CASE with a NULL condition
-- category: case_tricks
-- expect: answered
SELECT SUM(CASE WHEN NULL THEN amount ELSE 0 END) FROM tx;

-- title: CASE whose condition is a number
-- category: case_tricks
-- expect: unsupported_sql
SELECT SUM(CASE WHEN amount THEN 1 ELSE 0 END) FROM tx;

-- ============================================================== timing, random, side effects
-- title: sleep in WHERE
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE sleep(10) IS NULL;

-- title: pg_sleep in WHERE
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE pg_sleep(1) IS NULL;

-- title: sleep only for one unit
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE CASE WHEN cid = 7 THEN sleep_ms(1000) IS NULL ELSE TRUE END;

-- title: benchmark function
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE benchmark(100000000, md5('x')) = 0;

-- title: random in WHERE
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE random() < 0.5;

-- title: rand in SUM
-- category: side_effects
-- expect: unsupported_sql
SELECT SUM(amount * rand()) FROM tx;

-- title: setseed in WHERE
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE setseed(0.42) IS NULL;

-- title: setseed as a statement
-- category: side_effects
-- expect: unsupported_sql
SELECT setseed(0.42);

-- title: uuid in WHERE
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE uuid() IS NOT NULL;

-- title: gen_random_uuid in a key
-- category: side_effects
-- expect: unsupported_sql
SELECT gen_random_uuid() AS k, COUNT(*) FROM tx GROUP BY k;

-- title: nextval
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE nextval('seq') > 0;

-- title: currval
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE currval('seq') > 0;

-- title: now in WHERE
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE ts < now();

-- title: current_timestamp in WHERE
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE ts < current_timestamp;

-- title: current_date in WHERE
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE ts < current_date;

-- title: today in WHERE
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE ts < today();

-- title: get_current_time
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE get_current_time() IS NOT NULL;

-- title: current_setting
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE current_setting('threads') = '1';

-- title: getenv
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE getenv('DPGATE_ADMIN_KEY') LIKE 'a%';

-- title: getvariable
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE getvariable('x') IS NULL;

-- title: version
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE version() = 'v1';

-- title: txid_current
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE txid_current() > 0;

-- title: write a file through a function
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE write_csv('x') IS NULL;

-- title: hash of the unit
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE hash(cid) % 2 = 0;

-- title: md5 of a category
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE md5(city) = 'x';

-- title: repeat to blow up memory
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE repeat(city, 100000000) = 'x';

-- title: lpad to blow up memory
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE lpad(city, 100000000, 'x') = 'x';

-- title: catastrophic regular expression
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE regexp_matches(city, '(a+)+$');

-- title: regular expression operator
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE city ~ '(a*)*b';

-- title: SIMILAR TO
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE city SIMILAR TO '(a*)*b';

-- title: pathological LIKE pattern is answered quickly
-- category: side_effects
-- expect: answered
SELECT COUNT(*) FROM tx WHERE city LIKE '%a%a%a%a%a%a%a%a%a%a%a%a%a%a%a%a%a%a%a%a%a%a%a%a%b';

-- title: LIKE with ESCAPE
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE city LIKE '%a!%' ESCAPE '!';

-- title: GLOB
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE city GLOB '*a*';

-- title: range table function to burn time
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM range(1000000000000);

-- title: exponent to overflow
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE exp(amount) > 0;

-- title: power to overflow
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE pow(amount, 1000) > 0;

-- title: factorial
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE factorial(qty) > 0;

-- title: parameter placeholder
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE amount > ?;

-- title: numbered parameter
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE amount > $1;

-- title: named parameter
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE amount > :v;

-- title: lambda function
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE list_transform([1], x -> x + 1) IS NOT NULL;

-- title: list literal
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE [1, 2] IS NOT NULL;

-- title: struct literal
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE {'a': 1} IS NOT NULL;

-- title: string concatenation
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE city || 'x' = 'x';

-- title: COLLATE
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE cat COLLATE NOCASE = 'FOOD';

-- title: bitwise operator
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE qty & 1 = 1;

-- title: FILTER clause on an aggregate
-- category: side_effects
-- expect: unsupported_sql
SELECT COUNT(*) FILTER (WHERE flag) FROM tx;

-- ============================================================== the privacy unit
-- title: filter on the unit is a noisy count
-- category: privacy_unit
-- expect: answered
SELECT COUNT(*) FROM tx WHERE cid = 7;

-- title: sum of one unit's amounts is noisy
-- category: privacy_unit
-- expect: answered
SELECT SUM(amount) FROM tx WHERE cid = 7;

-- title: unit IN list filter
-- category: privacy_unit
-- expect: answered
SELECT COUNT(*) FROM tx WHERE cid IN (1, 2, 3);

-- title: unit range filter
-- category: privacy_unit
-- expect: answered
SELECT COUNT(*) FROM tx WHERE cid > 5 AND cid < 7;

-- title: unit BETWEEN numbers
-- category: privacy_unit
-- expect: answered
SELECT COUNT(*) FROM tx WHERE cid BETWEEN 5 AND 7;

-- title: unit BETWEEN a number and text
-- category: privacy_unit
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE cid BETWEEN 1 AND 'z';

-- title: unit BETWEEN text and a number
-- category: privacy_unit
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE cid BETWEEN 'a' AND 5;

-- title: id BETWEEN a number and the unit
-- category: privacy_unit
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE tid BETWEEN 1 AND cid;

-- title: unit IS TRUE
-- category: privacy_unit
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE cid IS TRUE;

-- title: unit LIKE
-- category: privacy_unit
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE cid LIKE '1%';

-- title: unit cast to text LIKE
-- category: privacy_unit
-- expect: answered
SELECT COUNT(*) FROM tx WHERE CAST(cid AS TEXT) LIKE '1%';

-- title: unit modulo in WHERE through a cast
-- category: privacy_unit
-- expect: answered
SELECT COUNT(*) FROM tx WHERE CAST(cid AS INT) % 2 = 0;

-- title: GROUP BY the unit
-- category: privacy_unit
-- expect: unsupported_sql
SELECT cid, COUNT(*) FROM tx GROUP BY cid;

-- title: GROUP BY the unit with delta
-- category: privacy_unit
-- expect: unsupported_sql
-- delta: 1e-6
SELECT cid, COUNT(*) FROM tx GROUP BY cid;

-- title: GROUP BY the unit qualified
-- category: privacy_unit
-- expect: unsupported_sql
SELECT t.cid, COUNT(*) FROM tx t GROUP BY t.cid;

-- title: GROUP BY the joined table's unit
-- category: privacy_unit
-- expect: unsupported_sql
SELECT c.cid, SUM(t.amount) FROM tx t JOIN cust c ON t.cid = c.cid GROUP BY c.cid;

-- title: GROUP BY the unit through an alias
-- category: privacy_unit
-- expect: unsupported_sql
SELECT cid AS customer, COUNT(*) FROM tx GROUP BY customer;

-- title: GROUP BY an alias named like another column
-- category: privacy_unit
-- expect: unsupported_sql
SELECT cat AS cid, COUNT(*) FROM tx GROUP BY cid;

-- title: GROUP BY position of the unit
-- category: privacy_unit
-- expect: unsupported_sql
SELECT COUNT(*), cid FROM tx GROUP BY 2;

-- title: GROUP BY unit USING join
-- category: privacy_unit
-- expect: unsupported_sql
SELECT cid, COUNT(*) FROM tx JOIN cust USING (cid) GROUP BY cid;

-- title: SELECT the unit without GROUP BY
-- category: privacy_unit
-- expect: unsupported_sql
SELECT cid FROM tx;

-- title: SUM of the unit
-- category: privacy_unit
-- expect: unsupported_sql
SELECT SUM(cid) FROM tx;

-- title: MAX of the unit
-- category: privacy_unit
-- expect: unsupported_sql
SELECT MAX(cid) FROM tx;

-- title: MEDIAN of the unit cast to a number
-- category: privacy_unit
-- expect: unsupported_sql
SELECT MEDIAN(CAST(cid AS DOUBLE)) FROM tx;

-- title: SUM of the unit cast and clamped
-- category: privacy_unit
-- expect: answered
SELECT SUM(LEAST(GREATEST(CAST(cid AS DOUBLE), 0), 10)) FROM tx;

-- title: COUNT DISTINCT of the unit
-- category: privacy_unit
-- expect: answered
SELECT COUNT(DISTINCT cid) FROM tx;

-- title: COUNT DISTINCT of the unit per public group
-- category: privacy_unit
-- expect: answered
SELECT cat, COUNT(DISTINCT cid) FROM tx GROUP BY cat;

-- title: ORDER BY the unit
-- category: privacy_unit
-- expect: unsupported_sql
SELECT cat, COUNT(*) FROM tx GROUP BY cat ORDER BY cid;

-- title: HAVING on the unit
-- category: privacy_unit
-- expect: unsupported_sql
SELECT cat, COUNT(*) FROM tx GROUP BY cat HAVING cid = 7;

-- title: unit compared with a timestamp
-- category: privacy_unit
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE cid = ts;

-- title: unit compared with a boolean
-- category: privacy_unit
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE cid = flag;

-- title: unit arithmetic
-- category: privacy_unit
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE cid + 0 = 7;

-- title: unit LENGTH
-- category: privacy_unit
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE LENGTH(cid) = 1;

-- title: unit in a public table column name
-- category: privacy_unit
-- expect: unknown_column
SELECT cid, COUNT(*) FROM rates GROUP BY cid;

-- ============================================================== joins
-- title: join on the unit is answered
-- category: joins
-- expect: answered
SELECT COUNT(*), SUM(t.amount) FROM tx t JOIN cust c ON t.cid = c.cid;

-- title: join on the unit reversed
-- category: joins
-- expect: answered
SELECT COUNT(*) FROM tx t JOIN cust c ON c.cid = t.cid;

-- title: self-join on the unit is bounded again
-- category: joins
-- expect: answered
SELECT COUNT(*), SUM(a.amount) FROM tx a JOIN tx b ON a.cid = b.cid;

-- title: join USING the unit
-- category: joins
-- expect: answered
SELECT COUNT(*) FROM tx JOIN cust USING (cid);

-- title: LEFT join on the unit
-- category: joins
-- expect: answered
SELECT COUNT(*) FROM tx t LEFT JOIN acct a ON t.cid = a.cid;

-- title: self-join on a category multiplies rows
-- category: joins
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx a JOIN tx b ON a.cat = b.cat;

-- title: self-join on transaction id
-- category: joins
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx a JOIN tx b ON a.tid = b.tid;

-- title: join unit to transaction id
-- category: joins
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx t JOIN cust c ON t.tid = c.cid;

-- title: cross join
-- category: joins
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx CROSS JOIN cust;

-- title: comma join
-- category: joins
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx, cust;

-- title: comma join with the condition in WHERE
-- category: joins
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx t, cust c WHERE t.cid = c.cid;

-- title: join ON TRUE
-- category: joins
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx t JOIN cust c ON TRUE;

-- title: join on the unit AND another condition
-- category: joins
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx t JOIN cust c ON t.cid = c.cid AND c.age > 50;

-- title: join on the unit OR TRUE
-- category: joins
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx t JOIN cust c ON t.cid = c.cid OR TRUE;

-- title: join on inequality of units
-- category: joins
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx t JOIN cust c ON t.cid <> c.cid;

-- title: join on units cast to text
-- category: joins
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx t JOIN cust c ON CAST(t.cid AS TEXT) = CAST(c.cid AS TEXT);

-- title: join a table's unit with itself
-- category: joins
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx t JOIN cust c ON t.cid = t.cid;

-- title: NATURAL join
-- category: joins
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx NATURAL JOIN cust;

-- title: RIGHT join
-- category: joins
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx t RIGHT JOIN cust c ON t.cid = c.cid;

-- title: FULL join
-- category: joins
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx t FULL JOIN cust c ON t.cid = c.cid;

-- title: SEMI join
-- category: joins
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx t SEMI JOIN cust c ON t.cid = c.cid;

-- title: ANTI join
-- category: joins
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx t ANTI JOIN cust c ON t.cid = c.cid;

-- title: ASOF join
-- category: joins
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx t ASOF JOIN cust c ON t.cid = c.cid;

-- title: POSITIONAL join
-- category: joins
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx t POSITIONAL JOIN cust c;

-- title: join with a public table
-- category: joins
-- expect: answered
SELECT COUNT(*) FROM tx t JOIN rates r ON t.cat = r.cat;

-- title: three-way join
-- category: joins
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx t JOIN cust c ON t.cid = c.cid JOIN acct a ON a.cid = t.cid;

-- title: join of a table with itself under one alias
-- category: joins
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx t JOIN tx t ON t.cid = t.cid;

-- title: join USING two columns
-- category: joins
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx JOIN acct USING (cid, balance);

-- title: join without a condition
-- category: joins
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx JOIN cust;

-- title: join on a customer attribute
-- category: joins
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx t JOIN cust c ON t.qty = c.age;

-- title: ambiguous column in a self-join
-- category: joins
-- expect: unsupported_sql
SELECT SUM(amount) FROM tx a JOIN tx b ON a.cid = b.cid;

-- ============================================================== unbounded GROUP BY keys
-- title: GROUP BY a category without a public list and delta 0
-- category: unbounded_groups
-- expect: unsupported_sql
SELECT city, COUNT(*) FROM tx GROUP BY city;

-- title: GROUP BY a category without a public list with delta
-- category: unbounded_groups
-- expect: answered
-- delta: 1e-6
SELECT city, COUNT(*) FROM tx GROUP BY city;

-- title: GROUP BY the raw amount
-- category: unbounded_groups
-- expect: unsupported_sql
SELECT amount, COUNT(*) FROM tx GROUP BY amount;

-- title: GROUP BY the raw amount with delta
-- category: unbounded_groups
-- expect: answered
-- delta: 1e-6
SELECT amount, COUNT(*) FROM tx GROUP BY amount;

-- title: GROUP BY the raw timestamp
-- category: unbounded_groups
-- expect: unsupported_sql
SELECT ts, COUNT(*) FROM tx GROUP BY ts;

-- title: GROUP BY the raw timestamp with delta
-- category: unbounded_groups
-- expect: answered
-- delta: 1e-6
SELECT ts, COUNT(*) FROM tx GROUP BY ts;

-- title: GROUP BY the date of the timestamp with HAVING on its year
-- category: unbounded_groups
-- expect: answered
-- delta: 1e-6
SELECT CAST(ts AS DATE) AS d, COUNT(*) FROM tx GROUP BY d HAVING YEAR(d) > 2000;

-- title: GROUP BY a date with HAVING on a date literal
-- category: unbounded_groups
-- expect: answered
-- delta: 1e-6
SELECT CAST(ts AS DATE) AS d, COUNT(*) FROM tx GROUP BY d HAVING d > '2025-06-01';

-- title: GROUP BY a date ordered by its month
-- category: unbounded_groups
-- expect: answered
-- delta: 1e-6
SELECT CAST(ts AS DATE) AS d, COUNT(*) AS n FROM tx GROUP BY d ORDER BY EXTRACT(month FROM d) LIMIT 3;

-- title: GROUP BY a decimal cast
-- category: unbounded_groups
-- expect: answered
-- delta: 1e-6
SELECT CAST(amount AS DECIMAL(6,1)) AS d, COUNT(*) FROM tx GROUP BY d;

-- title: GROUP BY a transaction id
-- category: unbounded_groups
-- expect: unsupported_sql
-- delta: 1e-6
SELECT tid, COUNT(*) FROM tx GROUP BY tid;

-- title: GROUP BY a transaction id cast to text without delta
-- category: unbounded_groups
-- expect: unsupported_sql
SELECT CAST(tid AS TEXT) AS t, COUNT(*) FROM tx GROUP BY t;

-- title: GROUP BY a transaction id cast to text with delta
-- category: unbounded_groups
-- expect: answered
-- delta: 1e-6
SELECT CAST(tid AS TEXT) AS t, COUNT(*) FROM tx GROUP BY t;

-- title: GROUP BY too many public cells
-- category: unbounded_groups
-- expect: unsupported_sql
SELECT qty, EXTRACT(doy FROM ts), EXTRACT(hour FROM ts), COUNT(*) FROM tx GROUP BY 1, 2, 3;

-- title: GROUP BY nine keys
-- category: unbounded_groups
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx GROUP BY cat, flag, note, EXTRACT(month FROM ts), EXTRACT(dow FROM ts), EXTRACT(quarter FROM ts), EXTRACT(hour FROM ts) > 12, qty > 5, amount > 5;

-- title: GROUP BY ROLLUP
-- category: unbounded_groups
-- expect: unsupported_sql
SELECT cat, COUNT(*) FROM tx GROUP BY ROLLUP (cat);

-- title: GROUP BY CUBE
-- category: unbounded_groups
-- expect: unsupported_sql
SELECT cat, flag, COUNT(*) FROM tx GROUP BY CUBE (cat, flag);

-- title: GROUP BY GROUPING SETS
-- category: unbounded_groups
-- expect: unsupported_sql
SELECT cat, COUNT(*) FROM tx GROUP BY GROUPING SETS ((cat), ());

-- title: GROUP BY ALL
-- category: unbounded_groups
-- expect: unsupported_sql
SELECT cat, COUNT(*) FROM tx GROUP BY ALL;

-- title: GROUP BY a constant number
-- category: unbounded_groups
-- expect: answered
SELECT 5 AS k, COUNT(*) FROM tx GROUP BY k;

-- title: GROUP BY a constant number with HAVING on it
-- category: unbounded_groups
-- expect: answered
SELECT 5 AS k, COUNT(*) FROM tx GROUP BY k HAVING k = 5;

-- title: GROUP BY two constant numbers
-- category: unbounded_groups
-- expect: answered
SELECT 2 AS a, 1 AS b, COUNT(*) FROM tx GROUP BY a, b;

-- title: GROUP BY a constant date
-- category: unbounded_groups
-- expect: answered
-- delta: 1e-6
SELECT CAST('2025-01-01' AS DATE) AS k, COUNT(*) FROM tx GROUP BY k;

-- title: GROUP BY position 1e309
-- category: unbounded_groups
-- expect: unsupported_sql
SELECT cat, COUNT(*) FROM tx GROUP BY 1e309;

-- title: GROUP BY a fractional position
-- category: unbounded_groups
-- expect: unsupported_sql
SELECT cat, COUNT(*) FROM tx GROUP BY 1.5;

-- title: GROUP BY position zero
-- category: unbounded_groups
-- expect: unsupported_sql
SELECT cat, COUNT(*) FROM tx GROUP BY 0;

-- title: top-k over a public category
-- category: unbounded_groups
-- expect: answered
SELECT cat, COUNT(*) AS n FROM tx GROUP BY cat ORDER BY n DESC LIMIT 1;

-- title: top-k with LIMIT 0
-- category: unbounded_groups
-- expect: answered
SELECT cat, COUNT(*) FROM tx GROUP BY cat ORDER BY COUNT(*) DESC LIMIT 0;

-- title: top-k of keys only with LIMIT 0
-- category: unbounded_groups
-- expect: answered
SELECT cat FROM tx GROUP BY cat ORDER BY COUNT(*) DESC LIMIT 0;

-- title: top-k with LIMIT 1 OFFSET 1
-- category: unbounded_groups
-- expect: answered
SELECT cat, COUNT(*) FROM tx GROUP BY cat ORDER BY COUNT(*) DESC LIMIT 1 OFFSET 1;

-- title: top-k over a nullable category
-- category: unbounded_groups
-- expect: answered
SELECT note, COUNT(*) FROM tx GROUP BY note ORDER BY COUNT(*) DESC LIMIT 2;

-- title: top-k over an unbounded key without delta
-- category: unbounded_groups
-- expect: unsupported_sql
SELECT city, COUNT(*) AS n FROM tx GROUP BY city ORDER BY n DESC LIMIT 1;

-- title: per-customer balance key through a join
-- category: unbounded_groups
-- expect: unsupported_sql
SELECT a.balance, COUNT(*) FROM tx t JOIN acct a ON t.cid = a.cid GROUP BY a.balance;

-- ============================================================== releasing rows
-- title: row-level SELECT
-- category: row_release
-- expect: unsupported_sql
SELECT amount FROM tx;

-- title: SELECT star
-- category: row_release
-- expect: unsupported_sql
SELECT * FROM tx;

-- title: SELECT star EXCLUDE
-- category: row_release
-- expect: unsupported_sql
SELECT * EXCLUDE (cid) FROM tx;

-- title: SELECT qualified star
-- category: row_release
-- expect: unsupported_sql
SELECT t.* FROM tx t;

-- title: COLUMNS expression
-- category: row_release
-- expect: unsupported_sql
SELECT COLUMNS('amount') FROM tx;

-- title: raw value beside an aggregate
-- category: row_release
-- expect: unsupported_sql
SELECT amount, COUNT(*) FROM tx;

-- title: raw value of the top row
-- category: row_release
-- expect: unsupported_sql
SELECT amount FROM tx ORDER BY amount DESC LIMIT 1;

-- title: raw value at an offset
-- category: row_release
-- expect: unsupported_sql
SELECT amount FROM tx ORDER BY amount LIMIT 1 OFFSET 10;

-- title: LIMIT on an aggregate answer
-- category: row_release
-- expect: answered
SELECT COUNT(*) FROM tx LIMIT 1;

-- title: OFFSET past the only row of an aggregate answer
-- category: row_release
-- expect: answered
SELECT COUNT(*) FROM tx LIMIT 1 OFFSET 1;

-- title: LIMIT percent
-- category: row_release
-- expect: unsupported_sql
SELECT cat, COUNT(*) FROM tx GROUP BY cat LIMIT 50%;

-- title: LIMIT with an expression
-- category: row_release
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx LIMIT 1 + 1;

-- title: LIMIT with a subquery
-- category: row_release
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx LIMIT (SELECT 1);

-- title: LIMIT huge
-- category: row_release
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx LIMIT 9223372036854775808;

-- title: LIMIT negative
-- category: row_release
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx LIMIT -1;

-- title: FETCH FIRST
-- category: row_release
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx FETCH FIRST 1 ROWS ONLY;

-- title: ORDER BY a raw column of an aggregate answer
-- category: row_release
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx ORDER BY amount;

-- title: ORDER BY a raw column in a grouped answer
-- category: row_release
-- expect: unsupported_sql
SELECT cat, COUNT(*) FROM tx GROUP BY cat ORDER BY amount;

-- title: ORDER BY a noisy maximum
-- category: row_release
-- expect: answered
SELECT cat, COUNT(*) FROM tx GROUP BY cat ORDER BY MAX(amount) DESC;

-- title: ORDER BY position 1e309
-- category: row_release
-- expect: unsupported_sql
SELECT cat, COUNT(*) FROM tx GROUP BY cat ORDER BY 1e309;

-- title: ORDER BY an alias that names a raw column
-- category: row_release
-- expect: unsupported_sql
SELECT COUNT(*) AS amount FROM tx ORDER BY amount;

-- title: SELECT DISTINCT of a category
-- category: row_release
-- expect: unsupported_sql
SELECT DISTINCT city FROM tx;

-- title: SELECT DISTINCT of an aggregate answer
-- category: row_release
-- expect: unsupported_sql
SELECT DISTINCT COUNT(*) FROM tx;

-- title: SELECT DISTINCT ON
-- category: row_release
-- expect: unsupported_sql
SELECT DISTINCT ON (cid) amount FROM tx;

-- title: window ROW_NUMBER
-- category: row_release
-- expect: unsupported_sql
SELECT ROW_NUMBER() OVER (ORDER BY amount) FROM tx;

-- title: window SUM per unit
-- category: row_release
-- expect: unsupported_sql
SELECT SUM(amount) OVER (PARTITION BY cid) FROM tx;

-- title: window COUNT over everything
-- category: row_release
-- expect: unsupported_sql
SELECT COUNT(*) OVER () FROM tx;

-- title: window LAG
-- category: row_release
-- expect: unsupported_sql
SELECT LAG(amount) OVER (ORDER BY ts) FROM tx;

-- title: window inside an aggregate
-- category: row_release
-- expect: unsupported_sql
SELECT SUM(x) FROM (SELECT RANK() OVER (ORDER BY amount) AS x FROM tx) s;

-- title: named WINDOW clause
-- category: row_release
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WINDOW w AS (PARTITION BY cid);

-- title: QUALIFY
-- category: row_release
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx QUALIFY ROW_NUMBER() OVER () = 1;

-- title: TABLESAMPLE
-- category: row_release
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx TABLESAMPLE (10 ROWS);

-- title: USING SAMPLE
-- category: row_release
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx USING SAMPLE 10%;

-- title: PIVOT on the table
-- category: row_release
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx PIVOT (SUM(amount) FOR cat IN ('food'));

-- title: column aliases on the table
-- category: row_release
-- expect: unsupported_sql
SELECT SUM(a) FROM tx AS t(a);

-- title: time travel AT VERSION
-- category: row_release
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx AT (VERSION => 1);

-- title: table hint
-- category: row_release
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WITH (NOLOCK);

-- title: MAX of the amount is by the exponential mechanism
-- category: row_release
-- expect: answered
SELECT MAX(amount) FROM tx;

-- title: MIN of the amount is by the exponential mechanism
-- category: row_release
-- expect: answered
SELECT MIN(amount) FROM tx;

-- title: MAX of an id
-- category: row_release
-- expect: unsupported_sql
SELECT MAX(tid) FROM tx;

-- title: MAX of a timestamp
-- category: row_release
-- expect: unsupported_sql
SELECT MAX(ts) FROM tx;

-- title: MAX of a category
-- category: row_release
-- expect: unsupported_sql
SELECT MAX(city) FROM tx;

-- title: MAX of an unbounded cast
-- category: row_release
-- expect: unsupported_sql
SELECT MAX(CAST(city AS DOUBLE)) FROM tx;

-- title: percentile 1 of the amount
-- category: row_release
-- expect: answered
SELECT PERCENTILE_CONT(1) WITHIN GROUP (ORDER BY amount) FROM tx;

-- title: percentile out of range
-- category: row_release
-- expect: unsupported_sql
SELECT QUANTILE_CONT(amount, 1.5) FROM tx;

-- title: percentile from a column
-- category: row_release
-- expect: unsupported_sql
SELECT QUANTILE_CONT(amount, qty) FROM tx;

-- title: SELECT INTO
-- category: row_release
-- expect: unsupported_sql
SELECT COUNT(*) INTO leak FROM tx;

-- title: FOR UPDATE
-- category: row_release
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx FOR UPDATE;

-- title: duplicate output names stay distinct
-- category: row_release
-- expect: answered
SELECT COUNT(*) AS n, COUNT(*) AS n_1, COUNT(*) AS n FROM tx;

-- title: keys only from a public list
-- category: row_release
-- expect: answered
SELECT cat FROM tx GROUP BY cat;

-- title: a constant select without aggregates
-- category: row_release
-- expect: unsupported_sql
SELECT 1 FROM tx;

-- title: select without FROM
-- category: row_release
-- expect: unsupported_sql
SELECT 1;

-- ============================================================== failing on some rows
-- title: division by a difference that is zero on one row
-- category: failing_rows
-- expect: answered
SELECT COUNT(*) FROM tx WHERE 1 / (amount - 2000000) > 0;

-- title: division by qty
-- category: failing_rows
-- expect: answered
SELECT SUM(LEAST(GREATEST(amount / qty, 0), 100)) FROM tx;

-- title: modulo by qty
-- category: failing_rows
-- expect: answered
SELECT COUNT(*) FROM tx WHERE amount % qty > 1;

-- title: cast of a category to INT
-- category: failing_rows
-- expect: answered
SELECT COUNT(*) FROM tx WHERE CAST(city AS INT) > 3;

-- title: cast of a category to DOUBLE in AVG
-- category: failing_rows
-- expect: answered
SELECT AVG(LEAST(GREATEST(CAST(city AS DOUBLE), 0), 10)) FROM tx;

-- title: cast of a category to DATE
-- category: failing_rows
-- expect: answered
SELECT COUNT(*) FROM tx WHERE CAST(city AS DATE) > '2025-01-01';

-- title: cast of a note to BOOLEAN
-- category: failing_rows
-- expect: answered
SELECT COUNT(*) FROM tx WHERE CAST(note AS BOOLEAN);

-- title: category IS TRUE
-- category: failing_rows
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE note IS TRUE;

-- title: cast of the unit to INT
-- category: failing_rows
-- expect: answered
SELECT COUNT(*) FROM tx WHERE CAST(cid AS INT) = 5;

-- title: unit compared with a number
-- category: failing_rows
-- expect: answered
SELECT COUNT(*) FROM tx WHERE cid = 5;

-- title: transaction id BETWEEN numbers
-- category: failing_rows
-- expect: answered
SELECT COUNT(*) FROM tx WHERE tid BETWEEN 10 AND 20;

-- title: length of a category divided by its difference
-- category: failing_rows
-- expect: answered
SELECT COUNT(*) FROM tx WHERE 1 / (LENGTH(city) - 12) > 0;

-- title: year of a category parsed as a date
-- category: failing_rows
-- expect: answered
SELECT COUNT(*) FROM tx WHERE EXTRACT(year FROM CAST(city AS DATE)) > 2000;

-- title: date key parsed from a category
-- category: failing_rows
-- expect: answered
-- delta: 1e-6
SELECT CAST(city AS DATE) AS d, COUNT(*) FROM tx GROUP BY d;

-- title: log of a negative value
-- category: failing_rows
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE ln(amount - 100) > 1;

-- title: log10 of zero
-- category: failing_rows
-- expect: unsupported_sql
SELECT SUM(LEAST(GREATEST(log10(qty - 1), 0), 1)) FROM tx;

-- title: sqrt of a negative value
-- category: failing_rows
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE sqrt(amount - 500) > 1;

-- title: strptime of a category
-- category: failing_rows
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE strptime(city, '%Y-%m-%d') > ts;

-- title: invalid date literal compared with a timestamp
-- category: failing_rows
-- expect: invalid_sql
SELECT COUNT(*) FROM tx WHERE ts > '2025-02-30';

-- title: invalid date literal cast
-- category: failing_rows
-- expect: answered
SELECT COUNT(*) FROM tx WHERE CAST('2025-13-45' AS DATE) > ts;

-- title: timestamp literal garbage
-- category: failing_rows
-- expect: answered
SELECT COUNT(*) FROM tx WHERE ts > TIMESTAMP 'garbage';

-- title: year of the timestamp in SUM
-- category: failing_rows
-- expect: answered
SELECT SUM(EXTRACT(year FROM ts)) FROM tx;

-- title: year of the timestamp in AVG
-- category: failing_rows
-- expect: answered
SELECT AVG(YEAR(ts)) FROM tx;

-- title: timestamp IS TRUE
-- category: failing_rows
-- expect: unsupported_sql
SELECT COUNT(*) FROM tx WHERE ts IS TRUE;

-- title: category IS FALSE in HAVING
-- category: failing_rows
-- expect: unsupported_sql
SELECT cat, COUNT(*) FROM tx GROUP BY cat HAVING cat IS FALSE;

-- title: cast of a category to DECIMAL
-- category: failing_rows
-- expect: answered
SELECT COUNT(*) FROM tx WHERE CAST(city AS DECIMAL(4,1)) > 2;

-- title: cast of the amount to TINYINT overflows
-- category: failing_rows
-- expect: answered
SELECT COUNT(*) FROM tx WHERE CAST(amount AS TINYINT) > 3;

-- title: division of noisy aggregates by zero
-- category: failing_rows
-- expect: answered
SELECT cat, SUM(amount) / (COUNT(*) - COUNT(*)) AS r FROM tx GROUP BY cat;

-- title: decimal cast of a noisy aggregate
-- category: failing_rows
-- expect: answered
SELECT CAST(SUM(amount) AS DECIMAL(3,1)) AS s FROM tx;

-- title: date cast of a noisy aggregate
-- category: failing_rows
-- expect: answered
SELECT EXTRACT(year FROM CAST(SUM(amount) AS DATE)) AS y FROM tx;
