"""The source kit: the small shared pieces every ITSM source is assembled from.

* :mod:`.options` reads a connector's options with the defaults of its JSON
  Schema (validation itself happens once, in ``qloop validate`` / config load);
* :mod:`.cursor` is the one watermark cursor (overlap, dedup on (key, updated));
* :mod:`.paging` holds the paginators (offset/limit, page number, next token,
  next URL in the body, ``Link`` header, range headers) and the one loop guard;
* :mod:`.auth` holds the auth schemes (basic, bearer, API key, OAuth2 client
  credentials and password grant, session login/logout);
* :mod:`.stream` drives a pull: an incremental stream or a backfill in
  concurrent windows, batches with the cursor after each page;
* :mod:`.paths` reads dotted paths in JSON (``result.0.sys_id``).

A new paginator or auth scheme is one small class beside the others.
"""
