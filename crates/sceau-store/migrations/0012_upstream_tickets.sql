-- An upstream CA that is still working on a request (RA mode, issue 13) hands back a ticket (a
-- CMP transaction waiting on pollReq): the queue keeps it with the job, so the next attempt,
-- on this instance or another, after a restart or not, continues that transaction instead of
-- sending a second request. NULL: the next attempt starts afresh.
ALTER TABLE orders ADD COLUMN issue_ticket TEXT;
