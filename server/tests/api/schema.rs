//! The SQLite and PostgreSQL migrations describe the same schema: each engine's migrated schema,
//! reduced to what the queries rely on, equals `migrations/schema.txt`. SQLite is checked in
//! every run; PostgreSQL whenever `LIVEKEEP_TEST_POSTGRES_URL` names a server (always in CI).

use std::path::Path;

use sqlx::AnyPool;

/// Columns (`table.column type null|not-null pk?`), foreign keys and named indexes, sorted.
/// Types are reduced to classes: booleans count as integers because SQLite stores them so and
/// the server decodes either (`db::Flag`).
async fn sqlite_schema(db: &AnyPool) -> Vec<String> {
    let columns: Vec<(String, String, String, i64, i64)> = sqlx::query_as(
        "SELECT m.name, c.name, c.type, c.\"notnull\", c.pk
         FROM sqlite_master m, pragma_table_info(m.name) c
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%'",
    )
    .fetch_all(db)
    .await
    .expect("columns");
    let keys: Vec<(String, String, String, String, String)> = sqlx::query_as(
        "SELECT m.name, f.\"from\", f.\"table\", f.\"to\", f.on_delete
         FROM sqlite_master m, pragma_foreign_key_list(m.name) f WHERE m.type = 'table'",
    )
    .fetch_all(db)
    .await
    .expect("foreign keys");
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master
         WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex%'",
    )
    .fetch_all(db)
    .await
    .expect("indexes");
    let uniques: Vec<(String, String)> = sqlx::query_as(
        "SELECT m.name, i.name FROM sqlite_master m, pragma_index_list(m.name) l,
                pragma_index_info(l.name) i
         WHERE m.type = 'table' AND l.origin = 'u'",
    )
    .fetch_all(db)
    .await
    .expect("unique constraints");
    describe(
        columns
            .into_iter()
            .map(|(table, column, ty, not_null, pk)| {
                (table, column, type_class(&ty), not_null != 0, pk != 0)
            }),
        keys,
        uniques,
        indexes,
    )
}

async fn postgres_schema(db: &AnyPool) -> Vec<String> {
    let columns: Vec<(String, String, String, String, bool)> = sqlx::query_as(
        "SELECT c.table_name::text, c.column_name::text, c.data_type::text, c.is_nullable::text,
                EXISTS (SELECT 1 FROM information_schema.key_column_usage k
                        JOIN information_schema.table_constraints t
                          ON t.constraint_name = k.constraint_name AND t.table_name = k.table_name
                        WHERE t.constraint_type = 'PRIMARY KEY' AND k.table_name = c.table_name
                          AND k.column_name = c.column_name)
         FROM information_schema.columns c
         WHERE c.table_schema = 'public' AND c.table_name NOT LIKE '_sqlx%'",
    )
    .fetch_all(db)
    .await
    .expect("columns");
    let keys: Vec<(String, String, String, String, String)> = sqlx::query_as(
        "SELECT k.table_name::text, k.column_name::text, u.table_name::text, u.column_name::text,
                r.delete_rule::text
         FROM information_schema.referential_constraints r
         JOIN information_schema.key_column_usage k ON k.constraint_name = r.constraint_name
         JOIN information_schema.constraint_column_usage u
           ON u.constraint_name = r.unique_constraint_name
         WHERE k.table_schema = 'public'",
    )
    .fetch_all(db)
    .await
    .expect("foreign keys");
    // Indexes PostgreSQL creates for PRIMARY KEY and UNIQUE end in _pkey/_key; SQLite's are
    // its autoindexes, left out above.
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes
         WHERE schemaname = 'public' AND indexname NOT LIKE '%\\_pkey' AND indexname NOT LIKE '%\\_key'",
    )
    .fetch_all(db)
    .await
    .expect("indexes");
    let uniques: Vec<(String, String)> = sqlx::query_as(
        "SELECT t.table_name::text, k.column_name::text FROM information_schema.table_constraints t
         JOIN information_schema.key_column_usage k ON k.constraint_name = t.constraint_name
         WHERE t.constraint_type = 'UNIQUE' AND t.table_schema = 'public'",
    )
    .fetch_all(db)
    .await
    .expect("unique constraints");
    describe(
        columns
            .into_iter()
            .map(|(table, column, ty, nullable, pk)| {
                (table, column, type_class(&ty), nullable == "NO", pk)
            }),
        keys,
        uniques,
        indexes,
    )
}

fn type_class(declared: &str) -> &'static str {
    match declared.to_ascii_lowercase().as_str() {
        "integer" | "bigint" | "boolean" => "int",
        "real" | "double precision" => "float",
        "text" => "text",
        "blob" | "bytea" => "bytes",
        other => panic!("a column type the schema comparison does not know: {other}"),
    }
}

fn describe(
    columns: impl Iterator<Item = (String, String, &'static str, bool, bool)>,
    keys: Vec<(String, String, String, String, String)>,
    uniques: Vec<(String, String)>,
    indexes: Vec<String>,
) -> Vec<String> {
    let mut lines: Vec<String> = columns
        .map(|(table, column, class, not_null, pk)| {
            // SQLite does not mark a PRIMARY KEY column NOT NULL; PostgreSQL does.
            let null = if not_null || pk { "not-null" } else { "null" };
            let pk = if pk { " pk" } else { "" };
            format!("column {table}.{column} {class} {null}{pk}")
        })
        .chain(
            keys.into_iter()
                .map(|(table, column, to_table, to_column, on_delete)| {
                    format!(
                        "foreign-key {table}.{column} -> {to_table}.{to_column} on delete {}",
                        on_delete.to_ascii_lowercase()
                    )
                }),
        )
        .chain(
            uniques
                .into_iter()
                .map(|(table, column)| format!("unique {table}.{column}")),
        )
        .chain(indexes.into_iter().map(|name| format!("index {name}")))
        .collect();
    lines.sort();
    lines
}

fn expected() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/schema.txt");
    std::fs::read_to_string(path)
        .expect("migrations/schema.txt is checked in")
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn the_sqlite_migrations_give_the_reference_schema() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("schema.db").display());
    let db = livekeep_server::db::connect(&url, std::time::Duration::from_secs(10))
        .await
        .expect("migrate");
    assert_eq!(sqlite_schema(&db).await, expected());
}

#[tokio::test]
async fn the_postgres_migrations_give_the_same_schema() {
    let Ok(admin) = std::env::var("LIVEKEEP_TEST_POSTGRES_URL") else {
        // CI always starts PostgreSQL (scripts/services.sh); a developer's plain `cargo test`
        // may not, and is told what was not compared.
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must set LIVEKEEP_TEST_POSTGRES_URL (scripts/services.sh)"
        );
        eprintln!("LIVEKEEP_TEST_POSTGRES_URL unset: PostgreSQL schema not compared here");
        return;
    };
    let url = crate::helpers::fresh_postgres_database_on(&admin).await;
    let db = livekeep_server::db::connect(&url, std::time::Duration::from_secs(10))
        .await
        .expect("migrate");
    assert_eq!(postgres_schema(&db).await, expected());
}
