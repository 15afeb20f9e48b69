#!/usr/bin/env bash
# Starts a throwaway OpenLDAP server for the ldap_sync example: the mdb backend in a
# temporary directory, on 127.0.0.1 (port $1, default 3389), with the base tree
# dc=example,dc=com, ou=people, ou=groups, and groups staff, sales and eng that each
# hold a member added by hand (cn=auditor,dc=example,dc=com), which the engine never
# removes. Bind as cn=admin,dc=example,dc=com / secret. Needs Debian's slapd and
# ldap-utils (DEBIAN_FRONTEND=noninteractive apt-get install -y slapd ldap-utils).
# Stop it with: kill "$(cat "$dir/slapd.pid")"  (the script prints the command).
set -euo pipefail
port="${1:-3389}"
slapd_bin="$(command -v slapd || echo /usr/sbin/slapd)"
dir="$(mktemp -d /tmp/attrflow-ldap-XXXXXX)"
mkdir -p "$dir/db"
cat > "$dir/slapd.conf" <<CONF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile $dir/slapd.pid
database mdb
maxsize 1073741824
dbnosync
suffix "dc=example,dc=com"
rootdn "cn=admin,dc=example,dc=com"
rootpw secret
directory $dir/db
index objectClass eq
index uid eq
CONF
"$slapd_bin" -f "$dir/slapd.conf" -h "ldap://127.0.0.1:$port/"
for _ in $(seq 1 100); do
  ldapsearch -x -H "ldap://127.0.0.1:$port" -b "" -s base >/dev/null 2>&1 && break
  sleep 0.1
done
ldapadd -x -H "ldap://127.0.0.1:$port" -D cn=admin,dc=example,dc=com -w secret >/dev/null <<LDIF
dn: dc=example,dc=com
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,dc=example,dc=com
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=example,dc=com
objectClass: organizationalUnit
ou: groups

dn: cn=staff,ou=groups,dc=example,dc=com
objectClass: groupOfNames
cn: staff
member: cn=auditor,dc=example,dc=com

dn: cn=sales,ou=groups,dc=example,dc=com
objectClass: groupOfNames
cn: sales
member: cn=auditor,dc=example,dc=com

dn: cn=eng,ou=groups,dc=example,dc=com
objectClass: groupOfNames
cn: eng
member: cn=auditor,dc=example,dc=com
LDIF
echo "slapd listening on ldap://127.0.0.1:$port (data in $dir)"
echo "stop it with: kill \$(cat $dir/slapd.pid) && rm -rf $dir"
