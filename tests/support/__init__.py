"""Test support shared by the test packages: fakes and fixtures that are not tests.

- servers.py: the Conclave servers tests/conftest.py's fixtures start (in process, or
  `conclave serve` as a subprocess), raw signaling sockets.
- http.py, accounts_client.py: REST calls as the tests make them; ready-made accounts.
- worker_fixtures.py: an in-process SFU worker on loopback (`worker`, `loopback_ice`).
- browser.py, browser_fixtures.py: Chromium through Playwright (`chromium`, `accounts`).
- seaweed.py: a real S3 server (SeaweedFS `weed mini`).
- clock.py, fake_workers.py, tree.py, engine.py: fakes for control's services and the
  SFU's object tree and engine.
- recorder_media.py, recorder_process.py, webvtt.py: media encoded with av, a lossy
  network, the recorder as a process, a strict WebVTT reader.
- paths.py: REPO_ROOT and DATA_DIR (tests/data/).
"""
