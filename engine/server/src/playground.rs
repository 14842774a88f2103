//! The playground: a page for bot designers at `/playground` (being written).

use axum::Router;

use crate::AppState;

/// The playground's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
}
