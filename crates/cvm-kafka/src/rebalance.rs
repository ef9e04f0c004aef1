//! Partition assignment: every assigned partition starts at the offset
//! stored with its state, so what was committed is never applied twice.

use cvm_store::Store;
use rdkafka::{
    consumer::{BaseConsumer, Consumer, ConsumerContext},
    types::RDKafkaRespErr,
    ClientContext, Offset, TopicPartitionList,
};
use tracing::{error, info};

use crate::StartFrom;

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
