DROP TABLE hub_archive_batches;
DROP TABLE hub_socket_days;
DROP TABLE hub_events;
