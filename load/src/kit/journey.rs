//! An entry's journey through the pipeline, read from both databases: the ledger's commit, the
//! relay's publish and the consolidation's apply (e2e-lag and sla-under-fire measure it).

/// Each applied entry described `description`: when the ledger committed it and when the
/// consolidation applied its event (both clocks are this machine's). Entries not applied yet
/// are left out.
pub async fn recorded_and_applied(
    ledger: &sqlx::PgPool,
    consolidation: &sqlx::PgPool,
    description: &str,
) -> anyhow::Result<Vec<Journey>> {
    let recorded: Vec<(
        uuid::Uuid,
        time::OffsetDateTime,
        Option<time::OffsetDateTime>,
    )> = sqlx::query_as(
        "SELECT o.event_id, e.recorded_at, o.published_at FROM outbox o \
             JOIN entries e ON e.id = (o.payload->>'entry_id')::uuid WHERE e.description = $1",
    )
    .bind(description)
    .fetch_all(ledger)
    .await?;
    let applied: std::collections::HashMap<uuid::Uuid, time::OffsetDateTime> =
        sqlx::query_as("SELECT event_id, processed_at FROM processed_events")
            .fetch_all(consolidation)
            .await?
            .into_iter()
            .collect();
    Ok(recorded
        .into_iter()
        .filter_map(|(event, recorded, published)| {
            applied.get(&event).map(|applied| Journey {
                recorded,
                published,
                applied: *applied,
            })
        })
        .collect())
}

/// When one event passed each stage (all on this machine's clock).
#[derive(Debug, Clone, Copy)]
pub struct Journey {
    /// The ledger's commit.
    pub recorded: time::OffsetDateTime,
    /// The relay's publish to SQS, as the outbox row records it once SQS accepted it; `None`
    /// when the row was not marked (a relay stopped between the send and the mark).
    pub published: Option<time::OffsetDateTime>,
    /// The consumer's commit.
    pub applied: time::OffsetDateTime,
}
