//! A database URL that does not parse is refused with a reason that says so and never
//! quotes the URL: it may hold the database password. No server is needed (the URL is
//! refused before any connection). A mutation run found that the reason was never read:
//! an empty or wrong one passed every test.

use iothubgdr_store_postgres::{PostgresOptions, PostgresStore};

const PASSWORD: &str = "Sup3rS3cretPassw0rd";

#[tokio::test]
async fn a_url_that_does_not_parse_is_refused_without_quoting_it() {
    for url in [
        format!("postgres://app:{PASSWORD}@db.example:notaport/iothubgdr"),
        format!("postgres://app:{PASSWORD}@db.example/iothubgdr?sslmode=bogus"),
    ] {
        let err = match PostgresStore::connect(&url, PostgresOptions::default()).await {
            Ok(_) => panic!("{url} was accepted"),
            Err(err) => err,
        };
        let detail = err.detail();
        assert_eq!(
            detail,
            "database error (invalid PostgreSQL database URL): \
             the URL does not parse as a PostgreSQL URL"
        );
        assert!(!format!("{err:?}").contains(PASSWORD), "{err:?}");
    }
}
