//! What a waiting long-poll reads: only the host's version. Every waiting
//! agent looks again on each committed change anywhere (and every second as
//! a backstop), so with a thousand hosts waiting that look must be a single
//! indexed row, not the host's whole window; the window is read once, when
//! the version has moved.

use crate::calendar::{BookError, Calendar};
use crate::database::DatabaseError;

impl Calendar {
    /// The version of host `name`, or none if it is not in the calendar (or
    /// was revoked).
    ///
    /// # Errors
    /// [`BookError::Database`].
    pub async fn version(&self, name: &str) -> Result<Option<i64>, BookError> {
        let client = self.database().connection().await?;
        let row = client
            .query_opt(
                "SELECT version FROM host WHERE name = $1 AND revoked_at IS NULL",
                &[&name],
            )
            .await
            .map_err(|e| {
                BookError::Database(DatabaseError(format!("cannot read the calendar: {e}")))
            })?;
        Ok(row.map(|r| r.get(0)))
    }
}
