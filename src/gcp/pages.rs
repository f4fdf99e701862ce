//! Paged list calls, driven in one place: every list method of every adapter here (Resource
//! Manager, IAM and IAM v2, Recommender, Cloud Logging, Firestore) reads its pages through
//! [`pages`], which follows the next-page token (or cursor) to the end, one call per page, and
//! fails closed: a listing that would loop, or that is longer than its cap, is an error, never a
//! short list taken for the whole one.
//!
//! Where the token travels (a `pageToken` query parameter, a field of a JSON body, a Firestore
//! `startAt` cursor) and how a page is sent and decoded stay with each call: `fetch` does that.

use std::collections::HashSet;
use std::future::Future;

use crate::ports::{Api, ApiError};

/// The most pages a listing reads unless it says otherwise: pages are 100-1,000 items, so this is
/// 100,000 items or more, far past any real project, folder or database, while a listing that
/// never ends (a server bug, a token that cycles through several values) stops after minutes,
/// not never.
pub const MAX_PAGES: u32 = 1000;

/// One page of a list call.
#[derive(Debug)]
pub struct Page<T> {
    /// What the page holds.
    pub items: Vec<T>,
    /// Where the next page starts (`nextPageToken`, or a cursor); `None` or empty on the last.
    pub next: Option<String>,
}

/// How many pages a listing reads at most, and what a longer listing is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageCap {
    /// A listing of more pages is an error: the list read would be short, and whatever is past
    /// the cap would silently be taken as absent.
    Fail(u32),
    /// The first pages are the answer: for a list ordered by what is needed first (audit-log
    /// entries newest first), whose tail is only older.
    Keep(u32),
}

/// Reads a list to its end: `fetch(None)` reads the first page and `fetch(Some(next))` each page
/// after it, until a page has no next; the items of every page, in order. Each page is one call
/// of `fetch`, so the requests made are the pages read, no more.
///
/// Fails closed, with [`ApiError::Decode`] naming `api` and `method`: a next token that was
/// already followed (the listing would loop) and, with [`PageCap::Fail`], a next page past the
/// cap. The first error of `fetch` ends the listing and is returned as it is.
pub async fn pages<T, F, Fut>(
    api: Api,
    method: &'static str,
    cap: PageCap,
    fetch: F,
) -> Result<Vec<T>, ApiError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<Page<T>, ApiError>>,
{
    let mut items = Vec::new();
    for_each_page(api, method, cap, fetch, |page| items.extend(page)).await?;
    Ok(items)
}

/// [`pages`], handing each page's items to `each` as it arrives instead of collecting them (for
/// listings too large to hold whole, such as a Cloud Asset Inventory snapshot); the pages read.
/// With [`PageCap::Fail`], the pages before the error have been handed out: a caller that keeps
/// what it was given drops it on the error.
pub async fn for_each_page<T, F, Fut>(
    api: Api,
    method: &'static str,
    cap: PageCap,
    mut fetch: F,
    mut each: impl FnMut(Vec<T>),
) -> Result<u32, ApiError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<Page<T>, ApiError>>,
{
    let (max, keep) = match cap {
        PageCap::Fail(n) => (n.max(1), false),
        PageCap::Keep(n) => (n.max(1), true),
    };
    let decode = |message: String| ApiError::Decode {
        api,
        method,
        message,
    };
    let mut followed = HashSet::new();
    let mut next = None;
    for read in 1..=max {
        let page = fetch(next.take()).await?;
        each(page.items);
        match page.next.filter(|t| !t.is_empty()) {
            None => return Ok(read),
            Some(token) if !followed.insert(token.clone()) => {
                return Err(decode(
                    "a page token came back a second time: the listing would never end".to_owned(),
                ));
            }
            Some(token) => next = Some(token),
        }
    }
    if keep {
        return Ok(max);
    }
    Err(decode(format!(
        "more than {max} pages: the list read would be short, so none of it is used"
    )))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A list of `total` numbers served `size` at a time with tokens `p<offset>`; records the token
    /// of every call.
    struct Served {
        total: u32,
        size: u32,
        calls: Mutex<Vec<Option<String>>>,
    }

    impl Served {
        fn new(total: u32, size: u32) -> Self {
            Self {
                total,
                size,
                calls: Mutex::new(Vec::new()),
            }
        }

        async fn page(&self, token: Option<String>) -> Result<Page<u32>, ApiError> {
            self.calls.lock().unwrap().push(token.clone());
            let start: u32 = token.map_or(0, |t| t[1..].parse().unwrap());
            let end = (start + self.size).min(self.total);
            Ok(Page {
                items: (start..end).collect(),
                next: (end < self.total).then(|| format!("p{end}")),
            })
        }

        fn calls(&self) -> Vec<Option<String>> {
            self.calls.lock().unwrap().clone()
        }
    }

    #[tokio::test]
    async fn a_listing_follows_each_token_once_to_the_last_page_one_call_per_page() {
        let served = Served::new(5, 2);
        let all = pages(Api::Iam, "list", PageCap::Fail(MAX_PAGES), |t| {
            served.page(t)
        })
        .await
        .unwrap();
        assert_eq!(all, vec![0, 1, 2, 3, 4]);
        assert_eq!(
            served.calls(),
            vec![None, Some("p2".to_owned()), Some("p4".to_owned())]
        );
    }

    #[tokio::test]
    async fn an_empty_next_token_ends_the_listing_like_a_missing_one() {
        let mut calls = 0;
        let all = pages(Api::Iam, "list", PageCap::Fail(3), |_| {
            calls += 1;
            async {
                Ok(Page {
                    items: vec!["a"],
                    next: Some(String::new()),
                })
            }
        })
        .await
        .unwrap();
        assert_eq!((all, calls), (vec!["a"], 1));
    }

    #[tokio::test]
    async fn a_listing_of_exactly_the_cap_is_whole_and_one_longer_fails_closed() {
        let exact = Served::new(6, 2);
        let all = pages(Api::Logging, "entries.list", PageCap::Fail(3), |t| {
            exact.page(t)
        })
        .await
        .unwrap();
        assert_eq!(all.len(), 6);
        let longer = Served::new(7, 2);
        let err = pages(Api::Logging, "entries.list", PageCap::Fail(3), |t| {
            longer.page(t)
        })
        .await
        .unwrap_err();
        assert!(
            matches!(
                err,
                ApiError::Decode {
                    api: Api::Logging,
                    method: "entries.list",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("more than 3 pages"), "{err}");
        assert_eq!(longer.calls().len(), 3, "the cap is the calls made");
    }

    #[tokio::test]
    async fn a_kept_cap_answers_the_first_pages_without_reading_further() {
        let served = Served::new(100, 2);
        let first = pages(Api::Logging, "entries.list", PageCap::Keep(2), |t| {
            served.page(t)
        })
        .await
        .unwrap();
        assert_eq!((first, served.calls().len()), (vec![0, 1, 2, 3], 2));
    }

    #[tokio::test]
    async fn a_token_that_comes_back_is_an_error_not_a_loop() {
        let mut calls = 0;
        let err = pages(
            Api::CloudAsset,
            "assets.list",
            PageCap::Fail(MAX_PAGES),
            |t| {
                calls += 1;
                // Two tokens that point at each other.
                let next = if t.as_deref() == Some("a") { "b" } else { "a" };
                async move {
                    Ok(Page::<u8> {
                        items: Vec::new(),
                        next: Some(next.to_owned()),
                    })
                }
            },
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("came back"), "{err}");
        assert_eq!(calls, 3, "a, b, then a again");
    }

    #[tokio::test]
    async fn the_first_failed_page_ends_the_listing_with_its_own_error() {
        let mut calls = 0;
        let err = pages(Api::Iam, "list", PageCap::Fail(MAX_PAGES), |t| {
            calls += 1;
            async move {
                match t {
                    None => Ok(Page {
                        items: vec![1],
                        next: Some("p1".to_owned()),
                    }),
                    Some(_) => Err(ApiError::Transport {
                        api: Api::Iam,
                        method: "list",
                        message: "reset".to_owned(),
                    }),
                }
            }
        })
        .await
        .unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert_eq!(calls, 2);
    }

    #[tokio::test]
    async fn each_page_is_handed_out_as_it_arrives_and_the_pages_are_counted() {
        let served = Served::new(5, 2);
        let mut handed = Vec::new();
        let read = for_each_page(
            Api::CloudAsset,
            "assets.list",
            PageCap::Fail(MAX_PAGES),
            |t| served.page(t),
            |page| handed.push(page),
        )
        .await
        .unwrap();
        assert_eq!(read, 3);
        assert_eq!(handed, vec![vec![0, 1], vec![2, 3], vec![4]]);
    }
}
