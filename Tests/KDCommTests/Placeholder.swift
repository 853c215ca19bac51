// Tests of KDComm live beside this file; this placeholder keeps the target non-empty until they land.
