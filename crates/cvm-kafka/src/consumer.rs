//! The ingest consumer and its partition assignment: every assigned
//! partition starts at the offset stored with its state, so what was
//! committed is never applied twice.

use cvm_store::Store;
use rdkafka::{
    consumer::{BaseConsumer, Consumer, ConsumerContext},
    types::RDKafkaRespErr,
    ClientContext, Offset, TopicPartitionList,
};
use tracing::{error, info};

use crate::{client_config, ClientError, KafkaConfig, StartFrom};

/// The ingest consumer: offsets stored by cvm, not auto-stored; seeks on assignment.
pub(crate) fn consumer(config: &KafkaConfig, store: &Store) -> Result<BaseConsumer<SeekToStoredOffsets>, ClientError> {
    let mut cc = client_config(config, &std::collections::BTreeMap::new());
    cc.set("group.id", &config.group_id)
        .set("enable.auto.offset.store", "false")
        .set("enable.auto.commit", "true")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "50")
        .set("queued.max.messages.kbytes", "65536")
        .set("partition.assignment.strategy", "range,roundrobin");
    for (k, v) in &config.consumer {
        cc.set(k, v);
    }
    let ctx = SeekToStoredOffsets { store: store.clone(), start_from: config.start_from };
    cc.create_with_context(ctx).map_err(|source| ClientError::Create { role: "consumer", source })
}

/// Seeks every assigned partition to the offset stored with its state.
pub(crate) struct SeekToStoredOffsets {
    pub(crate) store: Store,
    pub(crate) start_from: StartFrom,
}

impl ClientContext for SeekToStoredOffsets {}

impl ConsumerContext for SeekToStoredOffsets {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let parts: Vec<(String, i32)> =
                    tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
                for (topic, partition) in &parts {
                    let offset = match self.store.next_offset(topic, *partition) {
                        Ok(Some(o)) => Offset::Offset(o),
                        Ok(None) if self.start_from == StartFrom::Earliest => Offset::Beginning,
                        Ok(None) => Offset::End,
                        Err(e) => {
                            error!(topic, partition, error = %e, "Cannot read stored offset; starting from the beginning.");
                            Offset::Beginning
                        }
                    };
                    if let Err(e) = tpl.set_partition_offset(topic, *partition, offset) {
                        error!(topic, partition, error = %e, "Cannot set start offset.");
                    }
                    info!(topic, partition, ?offset, "Partition assigned.");
                }
                if let Err(e) = consumer.assign(tpl) {
                    error!(error = %e, "Assign failed.");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                info!(partitions = tpl.count(), "Partitions revoked.");
                if let Err(e) = consumer.unassign() {
                    error!(error = %e, "Unassign failed.");
                }
            }
            other => error!(error = ?other, "Rebalance error."),
        }
    }
}
