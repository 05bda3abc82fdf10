#!/bin/sh
# Creates the compose stack's secrets under deploy/secrets/ once: random
# Postgres and Grafana passwords, a random admin token, and providers.env
# with the provider keys found in this shell's environment. Existing files
# are kept, so running it again changes nothing.
#
#   OPENAI_API_KEY=sk-... sh deploy/compose/init-secrets.sh
set -eu
cd "$(dirname "$0")/../secrets"
umask 077

random() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

for pair in postgres_password:24 admin_token:32 grafana_admin_password:16; do
  name=${pair%%:*}
  if [ ! -s "$name" ]; then
    random "${pair##*:}" > "$name"
    echo "created deploy/secrets/$name"
  fi
done

if [ ! -s providers.env ]; then
  {
    echo "# Provider keys for the router; see providers.env.example."
    for var in OPENAI_API_KEY DEEPSEEK_API_KEY ANTHROPIC_API_KEY; do
      eval "value=\${$var:-}"
      if [ -n "$value" ]; then echo "$var=$value"; else echo "# $var="; fi
    done
  } > providers.env
  echo "created deploy/secrets/providers.env"
fi
if ! grep -q '^OPENAI_API_KEY=.' providers.env; then
  echo "note: deploy/secrets/providers.env has no OPENAI_API_KEY, which the model gpt-4o-mini in" >&2
  echo "      deploy/compose/llmgw.yaml needs: add it, or remove that model." >&2
fi
# The containers run as uid 65534 (nobody) and compose mounts secret files
# with their host owner and mode: the files must be readable by others, so
# the directory is what keeps other users of this host out.
chmod 0644 postgres_password admin_token grafana_admin_password
chmod 0700 .
