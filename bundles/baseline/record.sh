#!/usr/bin/env bash
# Records the API baseline: builds the bundles that export packages and deploys them, as version
# ${dmaplane.baseline.version} of the root pom, into bundles/baseline/repository (a Maven repository in the project that
# bnd-baseline-maven-plugin resolves the baseline from). See CONTRIBUTING.md for when and how to re-record.
#
# Usage: bundles/baseline/record.sh NEW-BASELINE-VERSION    e.g. bundles/baseline/record.sh 0.1.0-baseline-2
# Then commit pom.xml (its dmaplane.baseline.version now names the new baseline) and bundles/baseline/repository.
set -euo pipefail
cd "$(dirname "$0")/../.."

version=${1:?usage: bundles/baseline/record.sh NEW-BASELINE-VERSION}
# The bundles whose exported packages are baselined (the modules that declare bnd-baseline-maven-plugin).
# module directory:artifactId
modules=(framework:framework dmabuf-interop:dmabuf-interop drivers/rdma-core:rdma-core
         drivers/dmatest:driver-dmatest examples/perftest:perftest bundles/runtime:runtime
         vfio-emu:vfio examples/nvme-user:nvme-user)

# A version once resolved stays cached in ~/.m2, so a re-recorded baseline needs a version never used before.
if [ -d "bundles/baseline/repository/dev/dmaplane/framework/$version" ]; then
    echo "baseline version $version is already recorded; pick a new one" >&2
    exit 1
fi

# Build the bundles as they are now, without comparing them with the old baseline.
list=$(for m in "${modules[@]}"; do printf '%s,' "${m%%:*}"; done)
mvn -B -ntp -q package -pl "${list%,}" -am -DskipTests -DskipITs -Dbnd.baseline.skip=true

rm -rf bundles/baseline/repository
for m in "${modules[@]}"; do
    module=${m%%:*} artifact=${m#*:}
    mvn -B -ntp -q -N deploy:deploy-file \
        -Dfile="$module/target/$artifact-0.1.0-SNAPSHOT.jar" \
        -DgroupId=dev.dmaplane -DartifactId="$artifact" -Dversion="$version" -Dpackaging=jar \
        -DgeneratePom=true -Durl="file://$PWD/baseline/repository" -DrepositoryId=dmaplane-baseline
done

# Point the build at the new baseline.
sed -i "s|<dmaplane.baseline.version>.*</dmaplane.baseline.version>|<dmaplane.baseline.version>$version</dmaplane.baseline.version>|" pom.xml
echo "recorded baseline $version in bundles/baseline/repository"
