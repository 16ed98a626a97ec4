"""The shipped schedule for the redeploy (docs/runbooks/schedule.md): systemd units for an
operator's control machine (schedule/systemd/), the script they run (schedule/redeploy.py), its
lock, which the drift report takes too (schedule/lock.py), and the settings file they read
(schedule/schedule.env.example). Nothing here is deployed to the Gitea
host; the Gitea Actions variant is .gitea/workflows/redeploy.yaml."""
